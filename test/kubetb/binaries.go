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
	dir, err := pinned("KUBE_BIN")
	if err != nil {
		return "", err
	}
	for _, name := range binaryNames {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w (no %s in %s)", ErrNotBuilt, name, dir)
		}
	}
	return dir, nil
}

// pinned returns the value hack/versions-kube.sh gives variable. The script is the one place
// the versions and the cache layout are written down; bash evaluates it rather than Go
// parsing it.
func pinned(variable string) (string, error) {
	script := filepath.Join(testbed.RepoRoot(), "hack", "versions-kube.sh")
	out, err := exec.Command("bash", "-c", `. "$1" && printf %s "${!2}"`, "bash", script, variable).Output()
	if err != nil {
		return "", fmt.Errorf("read %s from %s: %w", variable, script, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("%s sets no %s", script, variable)
	}
	return v, nil
}
