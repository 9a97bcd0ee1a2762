package podmanager

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	testclock "k8s.io/utils/clock/testing"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

type harness struct {
	t   *testing.T
	rt  *fakeRuntime
	clk *testclock.FakeClock
	m   *Manager
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	rt := newFakeRuntime()
	clk := testclock.NewFakeClock(time.Unix(1_700_000_000, 0))
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := New(Config{
		NodeName:   "node1",
		NodeIP:     "192.0.2.10",
		PodLogsDir: t.TempDir(),
		ResolvConf: filepath.Join(t.TempDir(), "absent"),
		Log:        logrus.NewEntry(log),
		Clock:      clk,
		Sources:    []string{"file"},
	}, rt, rt)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, rt: rt, clk: clk, m: m}
}

func busybox(name string, args ...string) v1.Container {
	return v1.Container{Name: name, Image: "busybox:1.36", ImagePullPolicy: v1.PullIfNotPresent, Args: args}
}

func testPod(name string, policy v1.RestartPolicy, containers ...v1.Container) *v1.Pod {
	grace := int64(7)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Labels: map[string]string{"app": name}},
		Spec: v1.PodSpec{
			Containers: containers, RestartPolicy: policy, TerminationGracePeriodSeconds: &grace,
			NodeName: "node1",
		},
	}
}

// settle runs the pod's worker until a pass asks for no immediate resync, as the run loop
// would, and returns the pod's status.
func (h *harness) settle(uid types.UID) v1.PodStatus {
	h.t.Helper()
	w := h.m.workers[uid]
	if w == nil {
		h.t.Fatalf("no worker for %s", uid)
	}
	for i := 0; i < 10; i++ {
		next, done := w.syncOnce(context.Background())
		if done {
			return v1.PodStatus{}
		}
		if next > 0 {
			break
		}
	}
	p, _, ok := h.m.status.Get(uid)
	if !ok {
		h.t.Fatalf("no status for %s", uid)
	}
	return p.Status
}

func (h *harness) run(pods ...*v1.Pod) {
	h.m.Update("file", pods)
}

func containerState(t *testing.T, s v1.PodStatus, name string) v1.ContainerStatus {
	t.Helper()
	for _, cs := range append(append([]v1.ContainerStatus{}, s.InitContainerStatuses...), s.ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	t.Fatalf("no status for container %q", name)
	return v1.ContainerStatus{}
}

func condition(s v1.PodStatus, t v1.PodConditionType) v1.ConditionStatus {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestTwoContainerPodReachesRunningWithKubeletLabels(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a", "sleep", "1000"), busybox("b"))
	h.run(pod)
	s := h.settle(pod.UID)

	if s.Phase != v1.PodRunning {
		t.Fatalf("phase = %s, want Running", s.Phase)
	}
	if s.PodIP != "10.88.0.7" || s.HostIP != "192.0.2.10" {
		t.Fatalf("podIP %q hostIP %q", s.PodIP, s.HostIP)
	}
	for _, ct := range []v1.PodConditionType{v1.PodReady, v1.ContainersReady, v1.PodInitialized, v1.PodReadyToStartContainers, v1.PodScheduled} {
		if condition(s, ct) != v1.ConditionTrue {
			t.Errorf("condition %s = %s, want True", ct, condition(s, ct))
		}
	}
	for _, name := range []string{"a", "b"} {
		cs := containerState(t, s, name)
		if cs.State.Running == nil || !cs.Ready || cs.Started == nil || !*cs.Started {
			t.Errorf("container %s not running and ready: %+v", name, cs.State)
		}
		if !strings.HasPrefix(cs.ContainerID, "containerd://") || cs.ImageID != "sha256:bb" {
			t.Errorf("container %s ids: %q %q", name, cs.ContainerID, cs.ImageID)
		}
	}
	if len(h.rt.sandboxes) != 1 {
		t.Fatalf("%d sandboxes, want 1", len(h.rt.sandboxes))
	}
	for _, sb := range h.rt.sandboxes {
		want := map[string]string{
			cri.LabelPodName: "web", cri.LabelPodNamespace: "default", cri.LabelPodUID: "uid-web",
			cri.LabelManagedBy: "true", cri.LabelNodeName: "node1", "app": "web",
		}
		for k, v := range want {
			if sb.Labels[k] != v {
				t.Errorf("sandbox label %s = %q, want %q", k, sb.Labels[k], v)
			}
		}
		cfg := h.rt.sbConfigs[sb.Id]
		if !strings.HasSuffix(cfg.LogDirectory, "default_web_uid-web") || cfg.Hostname != "web" {
			t.Errorf("log dir %q hostname %q", cfg.LogDirectory, cfg.Hostname)
		}
	}
	for _, c := range h.rt.byName("a") {
		if c.cfg.LogPath != "a/0.log" || c.c.Labels[cri.LabelContainerName] != "a" ||
			c.cfg.Annotations[cri.AnnotationRestartCount] != "0" || c.cfg.Annotations[cri.AnnotationContainerHash] == "" {
			t.Errorf("container a config: log %q labels %v annotations %v", c.cfg.LogPath, c.c.Labels, c.cfg.Annotations)
		}
	}
}

func TestSyncTwiceChangesNothing(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	calls := len(h.rt.calls)
	h.settle(pod.UID)
	h.settle(pod.UID)
	if extra := h.rt.calls[calls:]; len(extra) != 0 {
		t.Fatalf("a second sync acted: %v", extra)
	}
}

func TestRestartPolicyDecidesAfterExit(t *testing.T) {
	cases := []struct {
		policy      v1.RestartPolicy
		exitCode    int32
		restarted   bool
		phase       v1.PodPhase
		sandboxLeft bool
	}{
		{v1.RestartPolicyAlways, 0, true, v1.PodRunning, true},
		{v1.RestartPolicyAlways, 1, true, v1.PodRunning, true},
		{v1.RestartPolicyOnFailure, 1, true, v1.PodRunning, true},
		{v1.RestartPolicyOnFailure, 0, false, v1.PodSucceeded, false},
		{v1.RestartPolicyNever, 0, false, v1.PodSucceeded, false},
		{v1.RestartPolicyNever, 3, false, v1.PodFailed, false},
	}
	for _, tc := range cases {
		t.Run(string(tc.policy)+"/exit"+string(rune('0'+tc.exitCode)), func(t *testing.T) {
			h := newHarness(t)
			pod := testPod("job", tc.policy, busybox("main"))
			h.run(pod)
			h.settle(pod.UID)
			h.rt.exit("main", tc.exitCode)
			s := h.settle(pod.UID)
			if got := len(h.rt.byName("main")) == 2; got != tc.restarted {
				t.Fatalf("restarted = %v, want %v", got, tc.restarted)
			}
			if s.Phase != tc.phase {
				t.Fatalf("phase = %s, want %s", s.Phase, tc.phase)
			}
			cs := containerState(t, s, "main")
			if tc.restarted {
				if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != tc.exitCode {
					t.Fatalf("restart count %d, last state %+v", cs.RestartCount, cs.LastTerminationState)
				}
			} else if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != tc.exitCode {
				t.Fatalf("state = %+v, want terminated with %d", cs.State, tc.exitCode)
			}
			ready := 0
			for _, sb := range h.rt.sandboxes {
				if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
					ready++
				}
			}
			if (ready == 1) != tc.sandboxLeft {
				t.Fatalf("ready sandboxes = %d, want ready=%v (a finished pod gives its sandbox back)", ready, tc.sandboxLeft)
			}
		})
	}
}

func TestCrashLoopBacksOffThenRestarts(t *testing.T) {
	h := newHarness(t)
	pod := testPod("crash", v1.RestartPolicyAlways, busybox("main"))
	h.run(pod)
	h.settle(pod.UID)

	h.rt.exit("main", 1)
	h.settle(pod.UID) // the first restart is immediate
	if n := h.rt.count("CreateContainer"); n != 2 {
		t.Fatalf("creates = %d after the first crash, want 2", n)
	}
	h.rt.exit("main", 1)
	s := h.settle(pod.UID)
	cs := containerState(t, s, "main")
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" ||
		!strings.Contains(cs.State.Waiting.Message, "back-off 10s restarting failed container=main pod=crash") {
		t.Fatalf("state = %+v, want CrashLoopBackOff with the wait", cs.State)
	}
	if n := h.rt.count("CreateContainer"); n != 2 {
		t.Fatalf("restarted during backoff: %d creates", n)
	}
	h.clk.Step(10 * time.Second)
	s = h.settle(pod.UID)
	if cs := containerState(t, s, "main"); cs.State.Running == nil || cs.RestartCount != 2 {
		t.Fatalf("after the backoff: state %+v restarts %d, want running with 2", cs.State, cs.RestartCount)
	}
	if n := len(h.rt.byName("main")); n != 2 {
		t.Fatalf("%d instances kept, want 2 (current and previous)", n)
	}
	if h.rt.count("RemoveContainer") != 1 {
		t.Fatalf("removed %d old instances, want 1", h.rt.count("RemoveContainer"))
	}
}

func TestImagePullPolicy(t *testing.T) {
	cases := []struct {
		name       string
		image      string
		policy     v1.PullPolicy
		pullErr    error
		wantReason string
		wantPulls  int
	}{
		{"present image is not pulled", "busybox:1.36", v1.PullIfNotPresent, nil, "", 0},
		{"Always pulls even when present", "busybox:1.36", v1.PullAlways, nil, "", 1},
		{"missing image is pulled", "other:1", v1.PullIfNotPresent, nil, "", 1},
		{"Never with a missing image", "other:1", v1.PullNever, nil, "ErrImageNeverPull", 0},
		{"failed pull", "other:1", v1.PullIfNotPresent, errors.New("not found"), "ErrImagePull", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.rt.pullErr = tc.pullErr
			c := busybox("main")
			c.Image, c.ImagePullPolicy = tc.image, tc.policy
			pod := testPod("img", v1.RestartPolicyAlways, c)
			h.run(pod)
			s := h.settle(pod.UID)
			cs := containerState(t, s, "main")
			if tc.wantReason == "" && cs.State.Running == nil {
				t.Fatalf("state = %+v, want running", cs.State)
			}
			if tc.wantReason != "" && (cs.State.Waiting == nil || cs.State.Waiting.Reason != tc.wantReason) {
				t.Fatalf("state = %+v, want waiting %s", cs.State, tc.wantReason)
			}
			if n := h.rt.count("PullImage"); n != tc.wantPulls {
				t.Fatalf("pulls = %d, want %d", n, tc.wantPulls)
			}
			if s.Phase != v1.PodRunning && tc.wantReason == "" || tc.wantReason != "" && s.Phase != v1.PodPending {
				t.Fatalf("phase = %s", s.Phase)
			}
		})
	}
}

func TestFailedPullBacksOff(t *testing.T) {
	h := newHarness(t)
	h.rt.pullErr = errors.New("connection refused")
	c := busybox("main")
	c.Image = "missing:1"
	pod := testPod("img", v1.RestartPolicyAlways, c)
	h.run(pod)
	h.settle(pod.UID)
	s := h.settle(pod.UID)
	if cs := containerState(t, s, "main"); cs.State.Waiting == nil || cs.State.Waiting.Reason != "ImagePullBackOff" {
		t.Fatalf("state = %+v, want ImagePullBackOff", cs.State)
	}
	if n := h.rt.count("PullImage"); n != 1 {
		t.Fatalf("pulled %d times during backoff", n)
	}
	h.rt.pullErr = nil
	h.clk.Step(10 * time.Second)
	s = h.settle(pod.UID)
	if cs := containerState(t, s, "main"); cs.State.Running == nil {
		t.Fatalf("state = %+v after backoff, want running", cs.State)
	}
}

func TestInitContainersRunInOrderBeforeApps(t *testing.T) {
	h := newHarness(t)
	pod := testPod("init", v1.RestartPolicyAlways, busybox("app"))
	pod.Spec.InitContainers = []v1.Container{busybox("first"), busybox("second")}
	h.run(pod)

	s := h.settle(pod.UID)
	if len(h.rt.byName("first")) != 1 || len(h.rt.byName("second")) != 0 || len(h.rt.byName("app")) != 0 {
		t.Fatal("only the first init container may run at first")
	}
	if s.Phase != v1.PodPending || condition(s, v1.PodInitialized) != v1.ConditionFalse {
		t.Fatalf("phase %s initialized %s", s.Phase, condition(s, v1.PodInitialized))
	}
	if cs := containerState(t, s, "app"); cs.State.Waiting == nil || cs.State.Waiting.Reason != "PodInitializing" {
		t.Fatalf("app state = %+v, want PodInitializing", cs.State)
	}
	h.rt.exit("first", 0)
	h.settle(pod.UID)
	if len(h.rt.byName("second")) != 1 || len(h.rt.byName("app")) != 0 {
		t.Fatal("the second init container must run after the first, alone")
	}
	h.rt.exit("second", 0)
	s = h.settle(pod.UID)
	if s.Phase != v1.PodRunning || condition(s, v1.PodInitialized) != v1.ConditionTrue {
		t.Fatalf("phase %s initialized %s after init", s.Phase, condition(s, v1.PodInitialized))
	}
}

func TestFailedInitContainerFailsNeverPod(t *testing.T) {
	h := newHarness(t)
	pod := testPod("init", v1.RestartPolicyNever, busybox("app"))
	pod.Spec.InitContainers = []v1.Container{busybox("setup")}
	h.run(pod)
	h.settle(pod.UID)
	h.rt.exit("setup", 2)
	s := h.settle(pod.UID)
	if s.Phase != v1.PodFailed || len(h.rt.byName("app")) != 0 || len(h.rt.byName("setup")) != 1 {
		t.Fatalf("phase %s, app instances %d, setup instances %d", s.Phase, len(h.rt.byName("app")), len(h.rt.byName("setup")))
	}
}

func TestDeletedPodIsTerminatedWithItsGracePeriod(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"), busybox("b"))
	h.run(pod)
	h.settle(pod.UID)
	logDir := h.m.podLogDir(pod)
	if _, err := os.Stat(logDir); err != nil {
		t.Fatalf("log dir not created: %v", err)
	}

	h.run() // the manifest is gone
	w := h.m.workers[pod.UID]
	if _, done := w.syncOnce(context.Background()); !done {
		t.Fatal("worker did not finish after terminating")
	}
	for id, timeout := range h.rt.stopTimeouts {
		if timeout != 7 {
			t.Errorf("container %s stopped with %ds, want the pod's 7s", id, timeout)
		}
	}
	if len(h.rt.stopTimeouts) != 2 || len(h.rt.sandboxes) != 0 || len(h.rt.containers) != 0 {
		t.Fatalf("left: %d sandboxes %d containers (stopped %d)", len(h.rt.sandboxes), len(h.rt.containers), len(h.rt.stopTimeouts))
	}
	if _, err := os.Stat(logDir); !os.IsNotExist(err) {
		t.Fatalf("log dir still there: %v", err)
	}
	if _, ok := h.m.workers[pod.UID]; ok {
		t.Fatal("worker still registered")
	}
	if len(h.m.Pods()) != 0 {
		t.Fatal("status still lists the pod")
	}
}

func TestSandboxFailureIsReportedAndRetriedAfterBackoff(t *testing.T) {
	h := newHarness(t)
	h.rt.runSandboxErr = errors.New("cni plugin not initialized")
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	s := h.settle(pod.UID)
	var cond v1.PodCondition
	for _, c := range s.Conditions {
		if c.Type == v1.PodReadyToStartContainers {
			cond = c
		}
	}
	if cond.Status != v1.ConditionFalse || cond.Reason != "FailedCreatePodSandBox" || !strings.Contains(cond.Message, "cni plugin not initialized") {
		t.Fatalf("condition = %+v", cond)
	}
	if s.Phase != v1.PodPending {
		t.Fatalf("phase = %s", s.Phase)
	}
	h.settle(pod.UID)
	if n := h.rt.count("RunPodSandbox"); n != 1 {
		t.Fatalf("retried during backoff: %d", n)
	}
	h.rt.runSandboxErr = nil
	h.clk.Step(10 * time.Second)
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning {
		t.Fatalf("phase after recovery = %s", s.Phase)
	}
}

func TestDeadSandboxIsReplacedAndContainersRestarted(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	for id := range h.rt.sandboxes {
		_ = h.rt.StopPodSandbox(context.Background(), id) // e.g. the pause process died
	}
	s := h.settle(pod.UID)
	if s.Phase != v1.PodRunning {
		t.Fatalf("phase = %s", s.Phase)
	}
	var ready int
	for _, sb := range h.rt.sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready++
			if sb.Metadata.Attempt != 1 {
				t.Fatalf("new sandbox attempt = %d, want 1", sb.Metadata.Attempt)
			}
		}
	}
	if ready != 1 {
		t.Fatalf("%d ready sandboxes", ready)
	}
	if cs := containerState(t, s, "a"); cs.RestartCount != 1 {
		t.Fatalf("restart count = %d, want 1", cs.RestartCount)
	}
}

func TestOrphansAreTerminatedOnlyAfterSourcesReported(t *testing.T) {
	h := newHarness(t)
	pod := testPod("old", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)

	// A new agent, same runtime, before its file source reported anything.
	h2 := newHarness(t)
	h2.rt = h.rt
	h2.m.rt, h2.m.images = h.rt, h.rt
	h2.m.relist(context.Background())
	if len(h2.m.workers) != 0 {
		t.Fatal("a pod was taken for an orphan before the sources reported")
	}
	h2.m.Update("file", nil)
	h2.m.relist(context.Background())
	w := h2.m.workers[pod.UID]
	if w == nil || !w.deleted {
		t.Fatal("the orphan did not get a terminating worker")
	}
	if _, done := w.syncOnce(context.Background()); !done {
		t.Fatal("orphan worker did not finish")
	}
	if len(h.rt.sandboxes) != 0 {
		t.Fatal("orphan sandbox left")
	}
	if h.rt.stopTimeouts[firstKey(h.rt.stopTimeouts)] != 7 {
		t.Fatalf("orphan stopped with %v, want the grace recorded on its sandbox (7)", h.rt.stopTimeouts)
	}
}

func firstKey(m map[string]int64) string {
	for k := range m {
		return k
	}
	return ""
}

func TestAgentRestartAdoptsRunningPod(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	before := len(h.rt.calls)

	h2 := newHarness(t)
	h2.m.rt, h2.m.images, h2.rt = h.rt, h.rt, h.rt
	h2.run(pod)
	s := h2.settle(pod.UID)
	if extra := h.rt.calls[before:]; len(extra) != 0 {
		t.Fatalf("a restarted agent acted on a running pod: %v", extra)
	}
	if s.Phase != v1.PodRunning {
		t.Fatalf("phase = %s", s.Phase)
	}
}

func TestRuntimeNotFoundDuringTerminationCountsAsDone(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	// Someone removed the sandbox behind the agent's back.
	for id := range h.rt.sandboxes {
		_ = h.rt.RemovePodSandbox(context.Background(), id)
	}
	h.run()
	if _, done := h.m.workers[pod.UID].syncOnce(context.Background()); !done {
		t.Fatal("termination of an already removed pod did not finish")
	}
	if !errdefs.IsNotFound(h.rt.StopPodSandbox(context.Background(), "nope")) {
		t.Fatal("fake must answer NotFound")
	}
}

func TestContainerConfigCarriesEnvResourcesAndSecurity(t *testing.T) {
	h := newHarness(t)
	uid, priv := int64(1000), true
	c := busybox("main", "echo", "$(GREETING) from $(POD_NAME)", "$$(literal)")
	c.Env = []v1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "NODE", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
		{Name: "GREETING", Value: "hello $(NODE)"},
	}
	c.Resources = v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m")},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("64Mi")},
	}
	c.SecurityContext = &v1.SecurityContext{
		RunAsUser: &uid, Privileged: &priv,
		Capabilities: &v1.Capabilities{Add: []v1.Capability{"NET_ADMIN"}, Drop: []v1.Capability{"ALL"}},
	}
	c.Ports = []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: v1.ProtocolTCP}}
	pod := testPod("cfg", v1.RestartPolicyAlways, c)
	h.run(pod)
	h.settle(pod.UID)

	got := h.rt.byName("main")[0].cfg
	env := map[string]string{}
	for _, kv := range got.Envs {
		env[kv.Key] = string(kv.Value)
	}
	want := map[string]string{"POD_NAME": "cfg", "POD_IP": "10.88.0.7", "NODE": "node1", "APP": "cfg", "GREETING": "hello node1"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if strings.Join(got.Args, "|") != "echo|hello node1 from cfg|$(literal)" {
		t.Errorf("args = %q", got.Args)
	}
	r := got.Linux.Resources
	if r.CpuShares != 256 || r.CpuQuota != 50000 || r.CpuPeriod != 100000 || r.MemoryLimitInBytes != 64<<20 {
		t.Errorf("resources = shares %d quota %d period %d mem %d", r.CpuShares, r.CpuQuota, r.CpuPeriod, r.MemoryLimitInBytes)
	}
	sc := got.Linux.SecurityContext
	if sc.RunAsUser.GetValue() != 1000 || !sc.Privileged || sc.Capabilities.AddCapabilities[0] != "NET_ADMIN" || sc.Capabilities.DropCapabilities[0] != "ALL" {
		t.Errorf("security context = %+v", sc)
	}
	for _, sbCfg := range h.rt.sbConfigs {
		if len(sbCfg.PortMappings) != 1 || sbCfg.PortMappings[0].HostPort != 8080 || !sbCfg.Linux.SecurityContext.Privileged {
			t.Errorf("sandbox ports %v privileged %v", sbCfg.PortMappings, sbCfg.Linux.SecurityContext.Privileged)
		}
	}
}

func TestUnsupportedEnvSourceIsCreateContainerConfigError(t *testing.T) {
	h := newHarness(t)
	c := busybox("main")
	c.Env = []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{Key: "k"}}}}
	pod := testPod("cfg", v1.RestartPolicyAlways, c)
	h.run(pod)
	s := h.settle(pod.UID)
	cs := containerState(t, s, "main")
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CreateContainerConfigError" || !strings.Contains(cs.State.Waiting.Message, "env[0] (X)") {
		t.Fatalf("state = %+v", cs.State)
	}
}

func TestDNSConfigFollowsPolicy(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# host\nnameserver 10.0.0.1\nsearch example.internal\noptions ndots:2 edns0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	one := "1"
	extra := &v1.PodDNSConfig{Nameservers: []string{"10.0.0.9"}, Searches: []string{"svc.local"}, Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: &one}}}
	cases := []struct {
		name     string
		policy   v1.DNSPolicy
		cfg      *v1.PodDNSConfig
		servers  string
		searches string
		options  string
	}{
		{"ClusterFirst falls back to the host", v1.DNSClusterFirst, nil, "10.0.0.1", "example.internal", "ndots:2 edns0"},
		{"Default merges dnsConfig", v1.DNSDefault, extra, "10.0.0.1 10.0.0.9", "example.internal svc.local", "ndots:1 edns0"},
		{"None uses only dnsConfig", v1.DNSNone, extra, "10.0.0.9", "svc.local", "ndots:1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("dns", v1.RestartPolicyAlways, busybox("a"))
			pod.Spec.DNSPolicy, pod.Spec.DNSConfig = tc.policy, tc.cfg
			got, err := dnsConfig(pod, resolv)
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(got.Servers, " "); s != tc.servers {
				t.Errorf("servers = %q, want %q", s, tc.servers)
			}
			if s := strings.Join(got.Searches, " "); s != tc.searches {
				t.Errorf("searches = %q, want %q", s, tc.searches)
			}
			if s := strings.Join(got.Options, " "); s != tc.options {
				t.Errorf("options = %q, want %q", s, tc.options)
			}
		})
	}
}

func TestQOSClass(t *testing.T) {
	lim := v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), v1.ResourceMemory: resource.MustParse("1Gi")}
	cases := []struct {
		name string
		res  v1.ResourceRequirements
		want v1.PodQOSClass
	}{
		{"nothing set", v1.ResourceRequirements{}, v1.PodQOSBestEffort},
		{"equal requests and limits", v1.ResourceRequirements{Requests: lim, Limits: lim}, v1.PodQOSGuaranteed},
		{"only limits (requests default to them)", v1.ResourceRequirements{Limits: lim}, v1.PodQOSGuaranteed},
		{"only a cpu request", v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}, v1.PodQOSBurstable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := busybox("a")
			c.Resources = tc.res
			if got := qosClass(testPod("q", v1.RestartPolicyAlways, c)); got != tc.want {
				t.Fatalf("qos = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestVolumeMountsWithoutVolumeSupportAreRefused(t *testing.T) {
	h := newHarness(t)
	c := busybox("main")
	c.VolumeMounts = []v1.VolumeMount{{Name: "data", MountPath: "/data"}}
	pod := testPod("vol", v1.RestartPolicyAlways, c)
	pod.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}}
	h.run(pod)
	s := h.settle(pod.UID)
	cs := containerState(t, s, "main")
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CreateContainerConfigError" || !strings.Contains(cs.State.Waiting.Message, `volume "data"`) {
		t.Fatalf("state = %+v", cs.State)
	}
	if n := h.rt.count("CreateContainer"); n != 0 {
		t.Fatalf("created %d containers without their volumes", n)
	}
}

func TestHalfDoneWorkFromACrashIsCompletedNotDuplicated(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"), busybox("b"))
	// A previous agent died after RunPodSandbox, and after creating (not starting) "a".
	w := newWorker(h.m, pod.UID)
	cfg, err := w.sandboxConfig(pod, 0)
	if err != nil {
		t.Fatal(err)
	}
	sbID, _ := h.rt.RunPodSandbox(t.Context(), cfg, "")
	c := busybox("a")
	ccfg, err := w.containerConfig(pod, &c, 0, "sha256:bb", &podState{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.CreateContainer(t.Context(), sbID, ccfg, cfg); err != nil {
		t.Fatal(err)
	}

	h.run(pod)
	s := h.settle(pod.UID)
	if s.Phase != v1.PodRunning {
		t.Fatalf("phase = %s", s.Phase)
	}
	if n := h.rt.count("RunPodSandbox"); n != 1 {
		t.Fatalf("%d sandboxes created, want the leftover one adopted", n)
	}
	if len(h.rt.byName("a")) != 1 || running(h, "a") != 1 || running(h, "b") != 1 {
		t.Fatalf("a: %d instances (%d running), b running %d", len(h.rt.byName("a")), running(h, "a"), running(h, "b"))
	}
}
