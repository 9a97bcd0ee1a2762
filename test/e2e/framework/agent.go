package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// Agent is one running nodeagent process with its own node name and directories.
type Agent struct {
	NodeName    string
	RootDir     string
	ManifestDir string
	LogsDir     string
	DebugAddr   string
	ConfigFile  string
	// NodeAPIPort is the port of the node API (served on every address, only with
	// --kubeconfig); each agent has its own, since agents of one package run in parallel.
	NodeAPIPort int

	t    *testing.T
	bin  string
	args []string
	// unhealthy: Start waits for /healthz to answer, not to say ok.
	unhealthy bool
	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{} // closed when the current process exits
	out       *SyncBuffer   // everything every process of this agent wrote
}

// AgentOptions tweaks an agent; zero is fine.
type AgentOptions struct {
	ExtraArgs []string
	// Unhealthy: the agent is expected to start unhealthy (a broken network config), so
	// starting waits only until /healthz answers, whatever it says.
	Unhealthy bool
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary is $NODEAGENT_BIN (set by `make e2e`), else a fresh build of cmd/nodeagent.
func binary(t *testing.T) string {
	if b := os.Getenv("NODEAGENT_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nodeagent-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "nodeagent")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/nodeagent")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build nodeagent: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NodeName is the node name StartAgent gives the test's agent: n-<test name>, cut to a
// length that keeps socket paths and pod names within their limits.
func NodeName(t *testing.T) string {
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	return "n-" + strings.Trim(name, "-")
}

// StartAgent starts nodeagent on the package's test bed and waits until /healthz answers
// ok. At cleanup it stops the agent and removes every sandbox of its node through CRI, so a
// failed test leaks nothing; on failure it prints the agent's log.
func StartAgent(t *testing.T, opts AgentOptions) *Agent {
	t.Helper()
	base := t.TempDir()
	a := &Agent{
		NodeName:    NodeName(t),
		RootDir:     filepath.Join(base, "root"),
		ManifestDir: filepath.Join(base, "manifests"),
		LogsDir:     filepath.Join(base, "pod-logs"),
		DebugAddr:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		ConfigFile:  filepath.Join(base, "config.yaml"),
		NodeAPIPort: freePort(t),
		t:           t,
		bin:         binary(t),
		out:         &SyncBuffer{},
	}
	if err := os.MkdirAll(a.ManifestDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Most settings go through the config file, as a user's would; the node name is a flag.
	cfg := fmt.Sprintf("root-dir: %s\npod-manifest-path: %s\npod-logs-dir: %s\nruntime-endpoint: %s\ndebug-address: %s\nlog-level: debug\n",
		a.RootDir, a.ManifestDir, a.LogsDir, TB.RuntimeEndpoint, a.DebugAddr)
	cfg += TB.AgentNetworkConfig(a.NodeName)
	cfg += fmt.Sprintf("node-api-address: \":%d\"\n", a.NodeAPIPort)
	if err := os.WriteFile(a.ConfigFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a.args = append([]string{"--config", a.ConfigFile, "--node-name", a.NodeName}, opts.ExtraArgs...)
	a.unhealthy = opts.Unhealthy
	t.Cleanup(a.cleanup)
	a.Start()
	return a
}

// Start runs the agent process (again, after Stop or Kill) and waits for /healthz.
func (a *Agent) Start() {
	a.t.Helper()
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = a.out, a.out
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("start nodeagent: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	Eventually(a.t, 30*time.Second, func() (bool, string) {
		code, body, err := a.Get("/healthz")
		return err == nil && (code == 200 || a.unhealthy), fmt.Sprintf("/healthz: %d %q %v", code, body, err)
	})
}

// Signal sends sig to the running agent and waits for it to exit, failing after timeout.
// It returns the exit code.
func (a *Agent) Signal(sig syscall.Signal, timeout time.Duration) int {
	a.t.Helper()
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.mu.Unlock()
	if cmd == nil {
		return 0
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		a.t.Fatalf("nodeagent did not exit within %s of %v", timeout, sig)
	}
	a.mu.Lock()
	a.cmd = nil
	a.mu.Unlock()
	return cmd.ProcessState.ExitCode()
}

func (a *Agent) cleanup() {
	a.mu.Lock()
	running := a.cmd != nil
	a.mu.Unlock()
	if running {
		a.Signal(syscall.SIGTERM, 30*time.Second)
	}
	if a.t.Failed() {
		a.t.Logf("nodeagent log:\n%s", a.Log())
	}
	RemoveNodePods(a.t, a.NodeName)
	// Pods still running when the agent stopped keep their tmpfs volumes (secrets, tokens)
	// mounted under its root dir; the agent would have unmounted them at teardown.
	if err := unmountUnder(a.RootDir); err != nil {
		a.t.Errorf("cleanup: %v", err)
	}
}

// unmountUnder unmounts every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// mountinfo escapes spaces and such as octal (\040); test paths have none.
		if m := f[4]; m == dir || strings.HasPrefix(m, dir+"/") {
			mounts = append(mounts, m)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	for _, m := range mounts {
		if err := syscall.Unmount(m, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveNodePods stops and removes every sandbox the named node's agent created.
func RemoveNodePods(t *testing.T, node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sbs, err := TB.CRI.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{cri.LabelNodeName: node}})
	if err != nil {
		t.Errorf("cleanup: list sandboxes: %v", err)
		return
	}
	for _, sb := range sbs {
		if err := TB.CRI.StopPodSandbox(ctx, sb.Id); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("cleanup: stop sandbox %s: %v", sb.Id, err)
		}
		if err := TB.CRI.RemovePodSandbox(ctx, sb.Id); err != nil && !errdefs.IsNotFound(err) {
			// After a kill -9 of the agent, containerd may hold a task it cancelled the
			// create of and can no longer delete (its own bug): the test bed's teardown kills
			// that shim. Anything else is the agent's or the test's and fails the test.
			if why := containerdLeak(sb.Id); why != "" {
				t.Logf("cleanup: sandbox %s cannot be removed, containerd leaked its task after a cancelled create (%s): %v", sb.Id, why, err)
				continue
			}
			t.Errorf("cleanup: remove sandbox %s: %v", sb.Id, err)
		}
	}
}

// containerdLeak is the containerd log line that explains id as containerd's own leak after a
// cancelled task create (testbed.CancelledTaskCreate), or "".
func containerdLeak(id string) string {
	b, err := os.ReadFile(TB.Values["CONTAINERD_LOG"])
	if err != nil {
		return ""
	}
	return testbed.CancelledTaskCreate(b, id)
}

// Log is everything the agent has written so far.
func (a *Agent) Log() string { return a.out.String() }

// WaitLog waits until the agent's log contains every one of subs on one line.
func (a *Agent) WaitLog(timeout time.Duration, subs ...string) string {
	a.t.Helper()
	var found string
	Eventually(a.t, timeout, func() (bool, string) {
		for _, line := range strings.Split(a.Log(), "\n") {
			all := true
			for _, s := range subs {
				if !strings.Contains(line, s) {
					all = false
					break
				}
			}
			if all {
				found = line
				return true, ""
			}
		}
		return false, fmt.Sprintf("no log line with all of %q", subs)
	})
	return found
}

// Get fetches a path from the agent's debug server.
func (a *Agent) Get(path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.DebugAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Pods is the agent's /pods.
func (a *Agent) Pods() ([]v1.Pod, error) {
	code, body, err := a.Get("/pods")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("/pods: %d %s", code, body)
	}
	var list v1.PodList
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, fmt.Errorf("/pods: %w", err)
	}
	return list.Items, nil
}

// PodName is the name a static pod gets on this agent's node: <name>-<node>.
func (a *Agent) PodName(name string) string { return name + "-" + a.NodeName }

// FindPod returns the pod with the given manifest name from /pods, or nil.
func (a *Agent) FindPod(name string) *v1.Pod {
	pods, err := a.Pods()
	if err != nil {
		return nil
	}
	for i := range pods {
		if pods[i].Name == a.PodName(name) {
			return &pods[i]
		}
	}
	return nil
}

// WaitPod waits until the pod named name (manifest name) satisfies cond, and returns it.
func (a *Agent) WaitPod(name string, timeout time.Duration, what string, cond func(*v1.Pod) bool) *v1.Pod {
	a.t.Helper()
	var got *v1.Pod
	Eventually(a.t, timeout, func() (bool, string) {
		got = a.FindPod(name)
		if got != nil && cond(got) {
			return true, ""
		}
		b, _ := json.Marshal(got)
		return false, fmt.Sprintf("pod %s is not %s; last seen: %s", a.PodName(name), what, b)
	})
	return got
}

// WaitRunning waits until every container of the pod is running and ready.
func (a *Agent) WaitRunning(name string, timeout time.Duration) *v1.Pod {
	a.t.Helper()
	return a.WaitPod(name, timeout, "Running and ready", testbed.PodRunningReady)
}

// WriteManifest writes a manifest file atomically (a rename), as an editor or a deploy tool
// would, so the agent never reads half a file.
func (a *Agent) WriteManifest(file, content string) {
	a.t.Helper()
	tmp := filepath.Join(a.ManifestDir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(a.ManifestDir, file)); err != nil {
		a.t.Fatal(err)
	}
}

// RemoveManifest deletes a manifest file.
func (a *Agent) RemoveManifest(file string) {
	a.t.Helper()
	if err := os.Remove(filepath.Join(a.ManifestDir, file)); err != nil {
		a.t.Fatal(err)
	}
}

// Sandboxes lists this agent's sandboxes in the runtime, as crictl pods would.
func (a *Agent) Sandboxes(extra map[string]string) []*runtimeapi.PodSandbox {
	a.t.Helper()
	sel := map[string]string{cri.LabelNodeName: a.NodeName}
	for k, v := range extra {
		sel[k] = v
	}
	sbs, err := TB.CRI.ListPodSandbox(context.Background(), &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	if err != nil {
		a.t.Fatalf("list sandboxes: %v", err)
	}
	return sbs
}

// Containers lists this agent's containers in the runtime, as crictl ps -a would.
func (a *Agent) Containers(extra map[string]string) []*runtimeapi.Container {
	a.t.Helper()
	sel := map[string]string{cri.LabelNodeName: a.NodeName}
	for k, v := range extra {
		sel[k] = v
	}
	cs, err := TB.CRI.ListContainers(context.Background(), &runtimeapi.ContainerFilter{LabelSelector: sel})
	if err != nil {
		a.t.Fatalf("list containers: %v", err)
	}
	return cs
}

// Eventually polls cond until it holds or timeout passes; the last message explains a
// failure.
func Eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var msg string
	for {
		var ok bool
		ok, msg = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SyncBuffer is an io.Writer a process's output can go to while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// AgentBinary is the nodeagent binary the tests run.
func AgentBinary(t *testing.T) string { return binary(t) }
