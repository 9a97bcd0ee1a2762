package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// setUpHostPath checks src's type (creating the directory or file for the *OrCreate types, as
// the kubelet does) and returns the host path. Nothing under the pod directory is made for it.
func setUpHostPath(src *v1.HostPathVolumeSource) (string, error) {
	p := src.Path
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("hostPath %q must be an absolute path", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("hostPath %q must not contain '..'", p)
		}
	}
	var typ v1.HostPathType
	if src.Type != nil {
		typ = *src.Type
	}
	if err := checkHostPathType(p, typ); err != nil {
		return "", err
	}
	return p, nil
}

// checkHostPathType applies the kubelet's hostPath type check; its errors read
// "hostPath type check failed: <path> is not a directory (...)".
func checkHostPathType(p string, typ v1.HostPathType) error {
	switch typ {
	case v1.HostPathUnset:
		return nil
	case v1.HostPathDirectoryOrCreate:
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("hostPath type DirectoryOrCreate: create %s: %w", p, err)
			}
		}
		return expectType(p, typ, fs.ModeDir, "a directory")
	case v1.HostPathFileOrCreate:
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			// As the kubelet: the file, not its parent directory.
			f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return fmt.Errorf("hostPath type FileOrCreate: create %s (its parent directory must exist): %w", p, err)
			}
			f.Close()
		}
		return expectType(p, typ, 0, "a file")
	case v1.HostPathDirectory:
		return expectType(p, typ, fs.ModeDir, "a directory")
	case v1.HostPathFile:
		return expectType(p, typ, 0, "a file")
	case v1.HostPathSocket:
		return expectType(p, typ, fs.ModeSocket, "a socket file")
	case v1.HostPathCharDev:
		return expectType(p, typ, fs.ModeDevice|fs.ModeCharDevice, "a character device")
	case v1.HostPathBlockDev:
		return expectType(p, typ, fs.ModeDevice, "a block device")
	}
	return fmt.Errorf("hostPath %s: unknown type %q (valid: \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice)", p, typ)
}

// expectType checks that p (symlinks followed) has exactly the file type want (0: regular).
func expectType(p string, typ v1.HostPathType, want fs.FileMode, what string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("hostPath type check failed: %s is not %s (type %s: it does not exist)", p, what, typ)
		}
		return fmt.Errorf("hostPath type check failed: %s: %w", p, err)
	}
	if got := fi.Mode().Type(); got != want {
		return fmt.Errorf("hostPath type check failed: %s is not %s (type %s: it is %s)", p, what, typ, describeType(got))
	}
	return nil
}

func describeType(t fs.FileMode) string {
	switch {
	case t == 0:
		return "a file"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe"
	}
	return "of type " + t.String()
}
