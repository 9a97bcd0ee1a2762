package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/agentdebug"
)

// agent is one nodeagent process with its own node name and directories under the test bed.
type agent struct {
	node        string
	dir         string
	manifestDir string
	debugAddr   string
	logPath     string // the process's stdout and stderr

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	rt   *cri.Client
}

// startAgent runs the agent binary for node with the common flags plus extra, and waits
// until /healthz and /readyz answer ok.
func (b *bench) startAgent(ctx context.Context, node string, extra ...string) (*agent, error) {
	dir := filepath.Join(b.tb.dir, "agents", node)
	a := &agent{
		node:        node,
		dir:         dir,
		manifestDir: filepath.Join(dir, "manifests"),
		logPath:     filepath.Join(dir, "agent.log"),
		rt:          b.tb.cri,
	}
	if err := os.MkdirAll(a.manifestDir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	a.debugAddr = fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{
		"--node-name", node,
		"--root-dir", filepath.Join(dir, "root"),
		"--runtime-endpoint", b.tb.endpoint,
		"--pod-manifest-path", a.manifestDir,
		"--pod-logs-dir", filepath.Join(dir, "pod-logs"),
		"--debug-address", a.debugAddr,
		// The test bed's pod network, reached through its CNI delegate like every pod's.
		"--pod-cidr", b.tb.env["POD_SUBNET"],
		"--cni-bridge", b.tb.env["CNI_BRIDGE"],
		"--cni-network-name", b.tb.env["CNI_NETWORK_NAME"],
		"--cni-bin-dir", b.tb.env["CNI_BIN_DIR"],
		"--cni-state-dir", b.tb.env["CNI_STATE_DIR"],
		"--cni-socket", filepath.Join(b.tb.env["CNI_SOCKET_DIR"], node+".sock"),
	}, extra...)
	logf, err := os.Create(a.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	a.cmd = exec.Command(b.agentBin, args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// Its own process group: the terminal's Ctrl-C is ours to handle; we stop it by PID.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	progress("starting agent %s: %s %s", node, filepath.Base(b.opts.agent), strings.Join(extra, " "))
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	b.agents = append(b.agents, a)

	for _, path := range []string{"/healthz", "/readyz"} {
		err := poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
			if a.exited() {
				return false, fmt.Errorf("agent %s exited at start: %s", node, a.tail(20))
			}
			code, _, err := a.get(path)
			return err == nil && code == http.StatusOK, nil
		})
		if err != nil {
			return nil, fmt.Errorf("agent %s %s: %w", node, path, err)
		}
	}
	return a, nil
}

func (a *agent) pid() int { return a.cmd.Process.Pid }

func (a *agent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop ends the process by its PID (SIGTERM, SIGKILL after 30 s) and then removes every
// sandbox of its node through CRI: the agent leaves pods running when it stops.
func (a *agent) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	a.stopProcess()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := removeSandboxes(ctx, a.rt, map[string]string{cri.LabelNodeName: a.node}); err != nil {
		progress("removing the pods of agent %s: %v", a.node, err)
	}
}

// stopProcess ends the agent's process only; its pods keep running.
func (a *agent) stopProcess() {
	if !a.exited() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			progress("agent %s (pid %d) ignored SIGTERM for 30 s; killing it", a.node, a.pid())
			_ = a.cmd.Process.Kill()
			<-a.done
		}
	}
}

// stopAgents stops every agent still running; safe to call twice.
func (b *bench) stopAgents() {
	for _, a := range b.agents {
		a.stop()
	}
	b.agents = nil
}

// removeSandboxes stops and removes every sandbox matching the labels, a few at a time
// (StopPodSandbox takes 0.1-0.4 s each).
func removeSandboxes(ctx context.Context, rt *cri.Client, labels map[string]string) error {
	sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: labels})
	if err != nil {
		return err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 4)
	)
	for _, sb := range sbs {
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer func() { <-sem; wg.Done() }()
			err := rt.StopPodSandbox(ctx, id)
			if err == nil || errdefs.IsNotFound(err) {
				err = rt.RemovePodSandbox(ctx, id)
			}
			if err != nil && !errdefs.IsNotFound(err) {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("sandbox %s: %w", id, err)
				}
				mu.Unlock()
			}
		}(sb.Id)
	}
	wg.Wait()
	return first
}

// podName is the name a static pod gets on this agent's node.
func (a *agent) podName(name string) string { return name + "-" + a.node }

// writeManifest puts a manifest in place the way a deploy tool does: written under a name
// the agent ignores, then renamed in. It returns the time taken just before the rename.
func (a *agent) writeManifest(file, content string) (time.Time, error) {
	tmp := filepath.Join(a.manifestDir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return time.Time{}, err
	}
	t0 := time.Now()
	if err := os.Rename(tmp, filepath.Join(a.manifestDir, file)); err != nil {
		return time.Time{}, err
	}
	return t0, nil
}

func (a *agent) removeManifest(file string) error {
	return os.Remove(filepath.Join(a.manifestDir, file))
}

func (a *agent) get(path string) (int, []byte, error) { return agentdebug.Get(a.debugAddr, path) }

// pods is the agent's own view, GET /pods.
func (a *agent) pods() ([]v1.Pod, error) { return agentdebug.Pods(a.debugAddr) }

// tail is the end of the agent's log, for error messages.
func (a *agent) tail(lines int) string { return agentdebug.Tail(a.logPath, lines) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// poll calls cond every interval until it reports done, returns an error, or timeout or ctx
// ends.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
