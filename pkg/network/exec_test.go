package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// The test binary doubles as the processes of TestPluginsEndWithTheProcessThatRanThem: an
// agent that runs a plugin through pluginExec, the plugin, and a process the plugin starts
// (as bridge starts host-local). helperEnv says which; helperDir is where they report.
const (
	helperEnv = "NODEAGENT_NETWORK_TEST_HELPER"
	helperDir = "NODEAGENT_NETWORK_TEST_DIR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "agent":
		helperAgent()
	case "plugin":
		helperPlugin()
	case "grandchild":
		helperGrandchild()
	}
	os.Exit(3)
}

var helperRecord = attachmentRecord{Network: "nodeagent", ContainerID: "c1", IfName: "eth0"}

// helperAgent locks the attachment and runs the plugin with it, as Runner.Add does; the
// plugin never returns, so this process is killed in the middle of the call.
func helperAgent() {
	dir := os.Getenv(helperDir)
	held, err := lockAttachment(context.Background(), filepath.Join(dir, "attachments"), helperRecord)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env := []string{helperEnv + "=plugin", helperDir + "=" + dir}
	_, err = (&pluginExec{}).ExecPlugin(withInherited(context.Background(), held.file()), os.Args[0], []byte("{}"), env)
	fmt.Fprintln(os.Stderr, "plugin returned:", err)
	os.Exit(1)
}

func helperPlugin() {
	dir := os.Getenv(helperDir)
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{helperEnv + "=grandchild", helperDir + "=" + dir}
	if err := cmd.Start(); err != nil {
		os.Exit(1)
	}
	writePID(filepath.Join(dir, "plugin.pid"))
	select {}
}

// helperGrandchild lives until the test creates <dir>/release.
func helperGrandchild() {
	dir := os.Getenv(helperDir)
	writePID(filepath.Join(dir, "grandchild.pid"))
	for {
		if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
			os.Exit(0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writePID(path string) {
	tmp := path + ".tmp"
	if os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o600) != nil || os.Rename(tmp, path) != nil {
		os.Exit(1)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, filepath.Base(path)+" is written", func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil
	})
	return pid
}

// running reports whether pid is a live process (not gone, not a zombie waiting for a
// reaper that may never come in a container).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func TestPluginsEndWithTheProcessThatRanThem(t *testing.T) {
	dir := t.TempDir()
	agent := exec.Command(os.Args[0])
	agent.Env = append(os.Environ(), helperEnv+"=agent", helperDir+"="+dir)
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dir, "release"), nil, 0o600)
		for _, p := range append(pids, agent.Process.Pid) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = agent.Wait()
	})
	plugin := readPID(t, filepath.Join(dir, "plugin.pid"))
	grandchild := readPID(t, filepath.Join(dir, "grandchild.pid"))
	pids = []int{plugin, grandchild}
	lock := attachmentLockPath(filepath.Join(dir, "attachments"), helperRecord)
	if _, ok, err := tryLockAttachment(lock); ok || err != nil {
		t.Fatalf("the attachment is not locked while its plugin runs (ok %v, %v)", ok, err)
	}

	// kill -9 of the agent in the middle of the call.
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	waitFor(t, "the plugin dies with the agent", func() bool { return !running(plugin) })

	// What the plugin started is beyond Pdeathsig, and still holds the lock: the next call
	// for the attachment waits for it.
	if !running(grandchild) {
		t.Fatal("the plugin's own child died too; the test cannot tell whether it holds the lock")
	}
	if _, ok, _ := tryLockAttachment(lock); ok {
		t.Fatal("the attachment lock was released while a process of the call still runs")
	}
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held, err := lockAttachment(ctx, filepath.Join(dir, "attachments"), helperRecord)
	if err != nil {
		t.Fatalf("the lock was not released once every process of the call had ended: %v", err)
	}
	held.release()
}

func TestPluginExecReportsThePluginsCNIError(t *testing.T) {
	dir := t.TempDir()
	for name, script := range map[string]string{
		"cnierr": `echo '{"cniVersion":"1.1.0","code":11,"msg":"iptables lock busy"}'; exit 1`,
		"stderr": `echo 'boom' >&2; exit 2`,
		"ok":     `cat; echo '{"cniVersion":"1.1.0"}' >/dev/null`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &pluginExec{}
	ctx := context.Background()

	_, err := e.ExecPlugin(ctx, filepath.Join(dir, "cnierr"), []byte("{}"), nil)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrTryAgainLater || ce.Msg != "iptables lock busy" {
		t.Errorf("plugin printing a CNI error: %#v", err)
	}
	_, err = e.ExecPlugin(ctx, filepath.Join(dir, "stderr"), []byte("{}"), nil)
	if err == nil || !strings.Contains(err.Error(), `"boom\n"`) {
		t.Errorf("plugin failing on stderr: %v", err)
	}
	out, err := e.ExecPlugin(ctx, filepath.Join(dir, "ok"), []byte(`{"in":1}`), nil)
	if err != nil || string(out) != `{"in":1}` {
		t.Errorf("plugin echoing stdin: %q, %v", out, err)
	}
}
