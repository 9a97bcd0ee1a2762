package framework

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// Testbed is a running private test bed, read from its testbed.env.
type Testbed struct {
	Dir             string
	Env             map[string]string
	RuntimeEndpoint string
	BusyboxImage    string // imported into containerd, never pulled
	Registry        string // 127.0.0.1:port, open, has busybox:1.36
	CRI             *cri.Client
}

// TB is the package's test bed, set by Main.
var TB *Testbed

// RepoRoot is the checkout holding this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Main brings a test bed up, runs the package's tests, and tears it down whatever they did.
// index (0..15) must be unique per e2e package. Without root, every test is skipped.
func Main(m *testing.M, index int) {
	os.Exit(runMain(m, index))
}

func runMain(m *testing.M, index int) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: skipped, needs root (it runs containerd, mounts and network namespaces)")
		return 0
	}
	dir := fmt.Sprintf("/tmp/nodeagent-e2e-%d", index)
	script := filepath.Join(RepoRoot(), "hack", "testbed.sh")
	down := func() {
		cmd := exec.Command(script, "down", dir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: testbed down %s: %v\n", dir, err)
		}
	}
	// A crashed earlier run may have left this index's test bed behind.
	if _, err := os.Stat(dir); err == nil {
		down()
	}
	up := exec.Command(script, "up", dir, fmt.Sprint(index))
	up.Stdout, up.Stderr = os.Stderr, os.Stderr
	if err := up.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: testbed up %s: %v\n", dir, err)
		down()
		return 1
	}
	defer down()
	tb, err := loadTestbed(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer tb.CRI.Close()
	TB = tb
	return m.Run()
}

func loadTestbed(dir string) (*Testbed, error) {
	f, err := os.Open(filepath.Join(dir, "testbed.env"))
	if err != nil {
		return nil, fmt.Errorf("read test bed env: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	tb := &Testbed{
		Dir:             dir,
		Env:             env,
		RuntimeEndpoint: env["RUNTIME_ENDPOINT"],
		BusyboxImage:    env["BUSYBOX_IMAGE"],
		Registry:        env["REGISTRY"],
	}
	for k, v := range map[string]string{"RUNTIME_ENDPOINT": tb.RuntimeEndpoint, "BUSYBOX_IMAGE": tb.BusyboxImage, "REGISTRY": tb.Registry} {
		if v == "" {
			return nil, fmt.Errorf("test bed env %s/testbed.env lacks %s", dir, k)
		}
	}
	tb.CRI, err = cri.New(tb.RuntimeEndpoint, cri.Options{})
	if err != nil {
		return nil, err
	}
	return tb, nil
}

// RestartContainerd stops the test bed's containerd and starts it again on the same state;
// running containers (their shims) live on, as on a node where containerd is upgraded.
func RestartContainerd(t *testing.T) {
	t.Helper()
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "testbed.sh"), "restart-containerd", TB.Dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("restart containerd: %v\n%s", err, out)
	}
}
