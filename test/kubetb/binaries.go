package kubetb

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nodeagent/nodeagent/test/testbed"
)

// ErrNotBuilt says the control plane binaries are missing: hack/install-kube.sh has not run.
var ErrNotBuilt = errors.New("kube-apiserver, kubectl and etcd are not built: run hack/install-kube.sh")

var binaryNames = []string{"kube-apiserver", "kubectl", "etcd"}

// Binaries returns the directory holding kube-apiserver, kubectl and etcd as
// hack/install-kube.sh builds them: $KUBE_BIN of hack/versions-kube.sh, which follows
// $NODEAGENT_CACHE. The error wraps ErrNotBuilt when one of them is missing.
func Binaries() (string, error) {
	script := filepath.Join(testbed.RepoRoot(), "hack", "versions-kube.sh")
	// The script is the one place the versions and the cache layout are written down; let
	// bash evaluate it rather than parse it.
	out, err := exec.Command("bash", "-c", `. "$1" && printf %s "$KUBE_BIN"`, "bash", script).Output()
	if err != nil {
		return "", fmt.Errorf("read KUBE_BIN from %s: %w", script, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("%s sets no KUBE_BIN", script)
	}
	for _, name := range binaryNames {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w (no %s in %s)", ErrNotBuilt, name, dir)
		}
	}
	return dir, nil
}
