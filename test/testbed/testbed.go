// Package testbed drives hack/testbed.sh for the programs that need a real test bed (the e2e
// framework and the bench): bring one up, read its testbed.env, restart its containerd, tear
// it down. The script runs in its own process group, so a Ctrl-C meant for the caller never
// kills it halfway; `down` cleans up whatever an interrupted `up` had started.
package testbed

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
)

// Env is what a running test bed's testbed.env says.
type Env struct {
	Dir             string
	Values          map[string]string // every KEY=value line
	RuntimeEndpoint string            // unix://... CRI endpoint of its containerd
	BusyboxImage    string            // imported into containerd, never pulled
	TestserverImage string            // hack/testserver on busybox, imported, never pulled
	Registry        string            // 127.0.0.1:port, open, serves busybox:1.36
}

// RepoRoot is the checkout holding this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func script() string { return filepath.Join(RepoRoot(), "hack", "testbed.sh") }

// run runs testbed.sh with args in its own process group, its output to out; cancelling ctx
// sends it SIGTERM.
func run(ctx context.Context, out io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, script(), args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testbed.sh %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// Up brings a test bed up in dir with index (0..15, unique among test beds running at once)
// and reads its env. A test bed left in dir by an earlier run is torn down first.
func Up(ctx context.Context, dir string, index int, out io.Writer) (*Env, error) {
	if _, err := os.Stat(dir); err == nil {
		if err := Down(dir, out); err != nil {
			return nil, err
		}
	}
	if err := run(ctx, out, "up", dir, fmt.Sprint(index)); err != nil {
		return nil, err
	}
	return Load(dir)
}

// Down tears the test bed in dir down; it is safe on a half-started or absent one. It runs
// to the end whatever happens to the caller's context.
func Down(dir string, out io.Writer) error {
	return run(context.Background(), out, "down", dir)
}

// RestartContainerd stops the test bed's containerd and starts it again on the same state;
// running containers (their shims) live on.
func RestartContainerd(dir string, out io.Writer) error {
	return run(context.Background(), out, "restart-containerd", dir)
}

// Load reads dir/testbed.env (KEY=value lines, never executed).
func Load(dir string) (*Env, error) {
	f, err := os.Open(filepath.Join(dir, "testbed.env"))
	if err != nil {
		return nil, fmt.Errorf("read test bed env: %w", err)
	}
	defer f.Close()
	values := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
			values[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read test bed env: %w", err)
	}
	env := &Env{
		Dir:             dir,
		Values:          values,
		RuntimeEndpoint: values["RUNTIME_ENDPOINT"],
		BusyboxImage:    values["BUSYBOX_IMAGE"],
		TestserverImage: values["TESTSERVER_IMAGE"],
		Registry:        values["REGISTRY"],
	}
	for k, v := range map[string]string{"RUNTIME_ENDPOINT": env.RuntimeEndpoint, "BUSYBOX_IMAGE": env.BusyboxImage,
		"TESTSERVER_IMAGE": env.TestserverImage, "REGISTRY": env.Registry} {
		if v == "" {
			return nil, fmt.Errorf("%s/testbed.env lacks %s", dir, k)
		}
	}
	return env, nil
}

// PodRunningReady is what a user waits for: phase Running and every container ready.
func PodRunningReady(p *v1.Pod) bool {
	if p.Status.Phase != v1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready {
			return false
		}
	}
	return true
}
