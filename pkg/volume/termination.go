package volume

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/types"
)

// MaxTerminationMessage is how much of a termination message file is read: the kubelet's
// 4 KiB. A container may write more; the rest is never read.
const MaxTerminationMessage = 4096

// TerminationMessageFile makes a new, empty file for one instance of container to write its
// termination message into: <root>/pods/<uid>/containers/<container>/<8 hex digits>, the
// kubelet's layout. It is bind-mounted at the container's terminationMessagePath, so it is
// writable by any user (0666: the container may not run as root) and a fresh file per
// instance, so a restart never shows the last instance's message. TearDown removes it with
// the pod directory.
func (m *Manager) TerminationMessageFile(uid types.UID, container string) (string, error) {
	if err := checkElement("pod UID", string(uid)); err != nil {
		return "", err
	}
	if err := checkElement("container name", container); err != nil {
		return "", err
	}
	dir := filepath.Join(m.podDir(uid), "containers", container)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("termination message file of container %q: %w", container, err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	p := filepath.Join(dir, hex.EncodeToString(b[:]))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	if err != nil {
		return "", fmt.Errorf("termination message file of container %q: %w", container, err)
	}
	defer f.Close()
	if err := f.Chmod(0o666); err != nil { // whatever the umask
		return "", fmt.Errorf("termination message file of container %q: %w", container, err)
	}
	return p, nil
}

// ReadTerminationMessage reads at most MaxTerminationMessage bytes of a file
// TerminationMessageFile made. A file that is gone reads as empty.
func (m *Manager) ReadTerminationMessage(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|nofollowFlag, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTerminationMessage))
	return string(b), err
}
