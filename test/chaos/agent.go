package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/agentdebug"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// agent is the one nodeagent process of the run, started again after every kill -9 with the
// same directories and flags, as systemd would.
type agent struct {
	bin         string
	args        []string
	rootDir     string
	manifestDir string
	logsDir     string
	debugAddr   string
	logPath     string // every process's stdout and stderr, appended

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// newAgent prepares an agent whose directories are under dir (inside the test bed, so its
// teardown unmounts whatever a pod left there) and whose log goes to logPath.
func newAgent(bin string, env *testbed.Env, dir, logPath string) (*agent, error) {
	a := &agent{
		bin:         bin,
		rootDir:     filepath.Join(dir, "root"),
		manifestDir: filepath.Join(dir, "manifests"),
		logsDir:     filepath.Join(dir, "pod-logs"),
		logPath:     logPath,
	}
	if err := os.MkdirAll(a.manifestDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a.debugAddr = l.Addr().String()
	l.Close()
	v := env.Values
	a.args = []string{
		"--node-name", nodeName,
		"--root-dir", a.rootDir,
		"--pod-manifest-path", a.manifestDir,
		"--pod-logs-dir", a.logsDir,
		"--runtime-endpoint", env.RuntimeEndpoint,
		"--debug-address", a.debugAddr,
		"--log-level", "debug",
		// The test bed's pod network, which its CNI delegate reaches through the socket dir.
		"--pod-cidr", v["POD_SUBNET"],
		"--cni-bridge", v["CNI_BRIDGE"],
		"--cni-network-name", v["CNI_NETWORK_NAME"],
		"--cni-bin-dir", v["CNI_BIN_DIR"],
		"--cni-state-dir", v["CNI_STATE_DIR"],
		"--cni-socket", filepath.Join(v["CNI_SOCKET_DIR"], nodeName+".sock"),
	}
	return a, nil
}

// start runs the agent and waits until /healthz answers ok.
func (a *agent) start() error {
	logf, err := os.OpenFile(a.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "=== chaos: starting the agent at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: the terminal's Ctrl-C is ours to handle; we stop it by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.cmd, a.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("agent exited at start (%v): %s", cmd.ProcessState, a.tail(20))
		default:
		}
		if code, _, err := a.get("/healthz"); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent /healthz not ok within 30 s: %s", a.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill is kill -9 of the agent's PID; it returns once the process is gone.
func (a *agent) kill() error {
	if a.cmd == nil {
		return fmt.Errorf("agent not running")
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("agent pid %d still there 10 s after SIGKILL", a.cmd.Process.Pid)
	}
	a.cmd = nil
	return nil
}

// stop ends the agent by its PID (SIGTERM, SIGKILL after 30 s); its pods keep running.
func (a *agent) stop() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		progress("agent (pid %d) ignored SIGTERM for 30 s; killing it", a.cmd.Process.Pid)
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}

func (a *agent) get(path string) (int, []byte, error) { return agentdebug.Get(a.debugAddr, path) }

// pods is the agent's own view, GET /pods.
func (a *agent) pods() ([]v1.Pod, error) { return agentdebug.Pods(a.debugAddr) }

// tail is the end of the agent's log, for error messages.
func (a *agent) tail(lines int) string { return agentdebug.Tail(a.logPath, lines) }
