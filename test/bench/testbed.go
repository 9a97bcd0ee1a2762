package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// testbed is a private containerd brought up by hack/testbed.sh, read from its testbed.env.
type testbed struct {
	dir      string
	script   string
	env      map[string]string
	endpoint string // RUNTIME_ENDPOINT
	image    string // BUSYBOX_IMAGE, imported into containerd, never pulled
	cri      *cri.Client
}

// upTestbed starts the test bed in dir. An earlier one left there (a -keep run, a crash) is
// torn down first, so every run starts from an empty containerd. The returned testbed is
// non-nil whenever something may need tearing down, even with an error.
func upTestbed(ctx context.Context, repo, dir string, index int) (*testbed, error) {
	tb := &testbed{dir: dir, script: filepath.Join(repo, "hack", "testbed.sh")}
	if _, err := os.Stat(dir); err == nil {
		progress("tearing down the test bed left in %s", dir)
		tb.down(false)
	}
	progress("bringing up the test bed in %s (index %d)", dir, index)
	cmd := exec.CommandContext(ctx, tb.script, "up", dir, fmt.Sprint(index))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own process group: a Ctrl-C meant for us must not kill it halfway. On cancel we
	// stop it by PID and `down` cleans up what it had started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return tb, fmt.Errorf("%s up %s %d: %w", tb.script, dir, index, err)
	}
	env, err := readEnv(filepath.Join(dir, "testbed.env"))
	if err != nil {
		return tb, err
	}
	tb.env = env
	tb.endpoint, tb.image = env["RUNTIME_ENDPOINT"], env["BUSYBOX_IMAGE"]
	if tb.endpoint == "" || tb.image == "" {
		return tb, fmt.Errorf("%s/testbed.env lacks RUNTIME_ENDPOINT or BUSYBOX_IMAGE", dir)
	}
	tb.cri, err = cri.New(tb.endpoint, cri.Options{CallTimeout: time.Minute})
	if err != nil {
		return tb, err
	}
	return tb, nil
}

// down tears the test bed down, or with keep says where it is. It runs to the end even
// after a Ctrl-C: its own process group keeps the terminal's signals away from it.
func (tb *testbed) down(keep bool) {
	if keep {
		progress("leaving the test bed up in %s; remove it with: hack/testbed.sh down %s", tb.dir, tb.dir)
		return
	}
	progress("tearing down the test bed in %s", tb.dir)
	cmd := exec.Command(tb.script, "down", tb.dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s down %s: %v\n", tb.script, tb.dir, err)
	}
}

func (tb *testbed) close() {
	if tb.cri != nil {
		_ = tb.cri.Close()
	}
}

// readEnv reads KEY=value lines without executing them.
func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read test bed env: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	return env, sc.Err()
}
