package podmanager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	testclock "k8s.io/utils/clock/testing"
)

// slowRuntime is the fake runtime with calls that take time on the fake clock, so the
// timeline has durations to show.
type slowRuntime struct {
	*fakeRuntime
	clk   *testclock.FakeClock
	takes map[string]time.Duration // call -> how long it takes
}

func (s *slowRuntime) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, h string) (string, error) {
	s.clk.Step(s.takes["RunPodSandbox"])
	return s.fakeRuntime.RunPodSandbox(ctx, cfg, h)
}

func (s *slowRuntime) PullImage(ctx context.Context, img *runtimeapi.ImageSpec, a *runtimeapi.AuthConfig, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	s.clk.Step(s.takes["PullImage"])
	return s.fakeRuntime.PullImage(ctx, img, a, cfg)
}

func (s *slowRuntime) CreateContainer(ctx context.Context, sb string, cfg *runtimeapi.ContainerConfig, sbCfg *runtimeapi.PodSandboxConfig) (string, error) {
	s.clk.Step(s.takes["CreateContainer"])
	return s.fakeRuntime.CreateContainer(ctx, sb, cfg, sbCfg)
}

func (s *slowRuntime) StartContainer(ctx context.Context, id string) error {
	s.clk.Step(s.takes["StartContainer"])
	return s.fakeRuntime.StartContainer(ctx, id)
}

func (h *harness) slow(takes map[string]time.Duration) {
	s := &slowRuntime{fakeRuntime: h.rt, clk: h.clk, takes: takes}
	h.m.rt, h.m.images = s, s
}

func (h *harness) withMetrics() (*Metrics, *prometheus.Registry) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.m.cfg.Metrics = m
	return m, reg
}

func stepOf(d PodDebug, step, container string) *Step {
	for i := range d.Steps {
		if d.Steps[i].Step == step && d.Steps[i].Container == container {
			return &d.Steps[i]
		}
	}
	return nil
}

func TestTimelineShowsEveryStepOfAStartInOrderWithDurations(t *testing.T) {
	h := newHarness(t)
	h.slow(map[string]time.Duration{
		"RunPodSandbox": 800 * time.Millisecond, "PullImage": 2 * time.Second,
		"CreateContainer": 50 * time.Millisecond, "StartContainer": 100 * time.Millisecond,
	})
	c := busybox("main")
	c.Image = "other:1" // not present: pulled
	pod := testPod("web", v1.RestartPolicyAlways, c)
	h.run(pod)
	t0 := h.clk.Now()
	// The delegate's ADD arrives while RunPodSandbox runs; the network service reports it.
	h.m.NetworkCall(pod.UID, "ADD", t0.Add(100*time.Millisecond), 600*time.Millisecond, nil)
	h.m.NetworkCall(pod.UID, "STATUS", t0, time.Second, nil) // not about a pod's start
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning {
		t.Fatalf("phase = %s", s.Phase)
	}

	d, ok := h.m.PodDebug(pod.UID)
	if !ok {
		t.Fatal("no timeline for a running pod")
	}
	if d.Name != "web" || d.Namespace != "default" || d.UID != pod.UID {
		t.Errorf("identity = %s/%s %s", d.Namespace, d.Name, d.UID)
	}
	want := []struct {
		step, container, detail string
		took                    time.Duration
	}{
		{StepSandbox, "", "", 800 * time.Millisecond},
		{StepNetwork, "", "", 600 * time.Millisecond}, // inside RunPodSandbox
		{StepImage, "main", "pulled", 2 * time.Second},
		{StepCreate, "main", "", 50 * time.Millisecond},
		{StepStart, "main", "", 100 * time.Millisecond},
	}
	if len(d.Steps) != len(want) {
		t.Fatalf("steps = %+v, want %d", d.Steps, len(want))
	}
	for i, w := range want {
		s := d.Steps[i]
		if s.Step != w.step || s.Container != w.container || s.Detail != w.detail || time.Duration(s.Duration) != w.took || s.Error != "" {
			t.Errorf("step %d = %+v, want %+v", i, s, w)
		}
	}
	if sb := stepOf(d, StepSandbox, ""); !sb.Start.Equal(t0) {
		t.Errorf("sandbox started at %v, want %v", sb.Start, t0)
	}
	if img := stepOf(d, StepImage, "main"); !img.Start.Equal(t0.Add(800 * time.Millisecond)) {
		t.Errorf("image step started at %v, want right after the sandbox", img.Start)
	}
	if d.LastSync.Start.IsZero() || d.LastSync.Operation == "" {
		t.Errorf("last sync = %+v", d.LastSync)
	}
	var reasons []string
	for _, e := range d.Events {
		reasons = append(reasons, e.Reason)
	}
	if got := strings.Join(reasons, ","); got != "Pulling,Pulled,Created,Started" {
		t.Errorf("events = %s", got)
	}
}

func TestTimelineKeepsTheLastErrorAndShowsTheBackoff(t *testing.T) {
	h := newHarness(t)
	h.rt.runSandboxErr = errors.New("cni plugin not initialized")
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	failedAt := h.clk.Now()

	d, _ := h.m.PodDebug(pod.UID)
	sb := stepOf(d, StepSandbox, "")
	if sb == nil || sb.Error != "cni plugin not initialized" || sb.Failures != 1 {
		t.Fatalf("sandbox step = %+v", sb)
	}
	if !strings.Contains(d.SandboxError, "cni plugin not initialized") {
		t.Errorf("sandboxError = %q", d.SandboxError)
	}
	if len(d.Backoffs) != 1 || d.Backoffs[0].Key != "sandbox" || time.Duration(d.Backoffs[0].Wait) != 10*time.Second ||
		!d.Backoffs[0].RetryAt.Equal(failedAt.Add(10*time.Second)) {
		t.Fatalf("backoffs = %+v, want the sandbox's 10s", d.Backoffs)
	}
	var failed bool
	for _, e := range d.Events {
		failed = failed || e.Reason == eventSandboxFailed && e.Type == v1.EventTypeWarning
	}
	if !failed {
		t.Errorf("no FailedCreatePodSandBox event in %+v", d.Events)
	}

	h.rt.runSandboxErr = nil
	h.clk.Step(10 * time.Second)
	h.settle(pod.UID)
	d, _ = h.m.PodDebug(pod.UID)
	sb = stepOf(d, StepSandbox, "")
	if sb.Error != "" || sb.LastError != "cni plugin not initialized" || !sb.LastErrorTime.Equal(failedAt) || sb.Failures != 1 {
		t.Fatalf("sandbox step after recovery = %+v, want ok with the last error kept", sb)
	}
	if d.SandboxError != "" {
		t.Errorf("sandboxError after recovery = %q", d.SandboxError)
	}
}

func TestCrashLoopBackoffIsInTheTimelineUntilTheRestart(t *testing.T) {
	h := newHarness(t)
	pod := testPod("crash", v1.RestartPolicyAlways, busybox("main"))
	h.run(pod)
	h.settle(pod.UID)
	h.rt.exit("main", 1)
	h.settle(pod.UID) // the first restart is immediate
	h.clk.Step(3 * time.Second)
	h.rt.exit("main", 1)
	s := h.settle(pod.UID)
	d, _ := h.m.PodDebug(pod.UID)
	var b *BackoffInfo
	for i := range d.Backoffs {
		if d.Backoffs[i].Key == "container/main" {
			b = &d.Backoffs[i]
		}
	}
	// The wait is the one the status message gives: 10s from the restart 3s ago.
	if b == nil || time.Duration(b.Wait) != 10*time.Second || b.RetryAt.Sub(h.clk.Now()) != 7*time.Second {
		t.Fatalf("container backoff = %+v, want 10s with 7s left", b)
	}
	if msg := containerState(t, s, "main").State.Waiting.Message; !strings.Contains(msg, "next restart in 7s") {
		t.Fatalf("waiting message %q disagrees with the timeline", msg)
	}
	h.clk.Step(7 * time.Second)
	h.settle(pod.UID)
	d, _ = h.m.PodDebug(pod.UID)
	if len(d.Backoffs) != 1 || time.Duration(d.Backoffs[0].Wait) != 20*time.Second || !d.Backoffs[0].RetryAt.IsZero() {
		t.Fatalf("after the restart: backoffs %+v, want only the next crash's 20s, not in force", d.Backoffs)
	}
}

func TestSteadyStateSyncLeavesTheTimelineAndAllocatesNothingForIt(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"), busybox("b"))
	h.run(pod)
	h.settle(pod.UID)
	before, _ := h.m.PodDebug(pod.UID)
	h.clk.Step(time.Minute)
	h.settle(pod.UID)
	after, _ := h.m.PodDebug(pod.UID)
	if fmt.Sprint(before.Steps) != fmt.Sprint(after.Steps) {
		t.Errorf("a sync that did nothing changed the steps:\n%v\n%v", before.Steps, after.Steps)
	}
	if !after.LastSync.Start.Equal(h.clk.Now()) || after.LastSync.Operation != workerOpSync {
		t.Errorf("last sync = %+v, want the one just run", after.LastSync)
	}
	w := h.m.workers[pod.UID]
	w.backoff.Failed("image/x") // one wait in force, as a pod waiting on something has
	start := h.clk.Now()
	if n := testing.AllocsPerRun(100, func() { w.finishSync("web", "default", workerOpSync, start) }); n != 0 {
		t.Errorf("recording a sync allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { w.step(StepStart, "a", "", start, nil) }); n != 0 {
		t.Errorf("recording a step allocates %v times, want 0", n)
	}
}

func TestPodEventsKeepTheNewestFoldingRepeats(t *testing.T) {
	var tl timeline
	t0 := time.Unix(1_700_000_000, 0)
	tl.addEvent("Warning", "BackOff", "back-off", t0)
	tl.addEvent("Warning", "BackOff", "back-off", t0.Add(time.Second))
	if d := tl.snapshot("u"); len(d.Events) != 1 || d.Events[0].Count != 2 || !d.Events[0].LastTime.Equal(t0.Add(time.Second)) {
		t.Fatalf("repeat not folded: %+v", d.Events)
	}
	for i := range maxPodEvents + 5 {
		tl.addEvent("Normal", "Started", fmt.Sprint(i), t0.Add(time.Duration(i)*time.Minute))
	}
	tl.addEvent("Normal", "Started", fmt.Sprint(maxPodEvents+4), t0.Add(time.Hour)) // folds into the newest
	d := tl.snapshot("u")
	if len(d.Events) != maxPodEvents {
		t.Fatalf("%d events kept, want %d", len(d.Events), maxPodEvents)
	}
	if d.Events[0].Message != "5" || d.Events[maxPodEvents-1].Message != fmt.Sprint(maxPodEvents+4) || d.Events[maxPodEvents-1].Count != 2 {
		t.Fatalf("events = first %+v last %+v, want 5 .. %d (x2)", d.Events[0], d.Events[maxPodEvents-1], maxPodEvents+4)
	}
}

func TestPodDebugOfAnUnknownPod(t *testing.T) {
	h := newHarness(t)
	if _, ok := h.m.PodDebug("nope"); ok {
		t.Fatal("PodDebug found a pod the agent does not have")
	}
	h.m.NetworkCall("nope", "ADD", time.Now(), time.Second, nil) // must not panic
}

func TestMetricsFollowThePodsLife(t *testing.T) {
	h := newHarness(t)
	m, reg := h.withMetrics()
	h.slow(map[string]time.Duration{"RunPodSandbox": 2 * time.Second, "StartContainer": time.Second})
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"), busybox("b"))
	h.run(pod)
	h.settle(pod.UID)

	want := `
# HELP kubelet_running_containers Number of containers currently running, by state.
# TYPE kubelet_running_containers gauge
kubelet_running_containers{container_state="created"} 0
kubelet_running_containers{container_state="exited"} 0
kubelet_running_containers{container_state="running"} 2
kubelet_running_containers{container_state="unknown"} 0
# HELP kubelet_running_pods Number of pods that have a running pod sandbox.
# TYPE kubelet_running_pods gauge
kubelet_running_pods 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kubelet_running_pods", "kubelet_running_containers"); err != nil {
		t.Error(err)
	}
	// Sandbox 2s, two starts 1s each: the pod ran 4s after the agent first saw it.
	if got := histogramSum(t, reg, "kubelet_pod_start_duration_seconds"); got != 4 {
		t.Errorf("pod start duration sum = %v, want 4", got)
	}
	if n := testutil.CollectAndCount(m.workerDuration); n != 2 {
		t.Errorf("%d worker duration series, want create and sync", n)
	}

	h.rt.exit("a", 1)
	h.rt.exit("b", 0)
	h.settle(pod.UID)
	if got := testutil.ToFloat64(m.restarts.WithLabelValues(RestartReasonError)); got != 1 {
		t.Errorf("restarts{Error} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.restarts.WithLabelValues(RestartReasonCompleted)); got != 1 {
		t.Errorf("restarts{Completed} = %v, want 1", got)
	}
	// The pod started once: restarts do not count as starts.
	if got := histogramCount(t, reg, "kubelet_pod_start_duration_seconds"); got != 1 {
		t.Errorf("pod starts observed = %d, want 1", got)
	}

	h.run() // deleted
	h.settle(pod.UID)
	if n := testutil.CollectAndCount(m.workerDuration); n != 3 {
		t.Errorf("%d worker duration series after the kill, want create, sync and kill", n)
	}
	if got := testutil.ToFloat64(m.runningPods); got != 0 {
		t.Errorf("running pods after deletion = %v", got)
	}
}

func TestAdoptedPodIsNotAStart(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)

	h2 := newHarness(t)
	h2.m.rt, h2.m.images, h2.rt = h.rt, h.rt, h.rt
	_, reg := h2.withMetrics()
	h2.run(pod)
	h2.settle(pod.UID)
	if got := histogramCount(t, reg, "kubelet_pod_start_duration_seconds"); got != 0 {
		t.Errorf("an adopted running pod was observed as a start")
	}
}

func TestRestartReasonSaysWhyThePreviousInstanceEnded(t *testing.T) {
	sb := &runtimeapi.PodSandbox{Id: "sb1"}
	exited := func(id, sandbox, reason string, code int32) *containerInfo {
		return &containerInfo{
			c:      &runtimeapi.Container{Id: id, PodSandboxId: sandbox, State: runtimeapi.ContainerState_CONTAINER_EXITED},
			status: &runtimeapi.ContainerStatus{ExitCode: code, Reason: reason},
		}
	}
	w := &worker{kills: map[string]kill{"killed": {reason: RestartReasonProbeFailed}}}
	for _, tc := range []struct {
		prev *containerInfo
		want string
	}{
		{exited("c1", "sb1", "Completed", 0), RestartReasonCompleted},
		{exited("c2", "sb1", "Error", 2), RestartReasonError},
		{exited("c3", "sb1", "OOMKilled", 137), RestartReasonOOMKilled},
		{exited("c4", "sb0", "Completed", 0), RestartReasonSandboxChanged},
		{exited("killed", "sb1", "Error", 137), RestartReasonProbeFailed},
	} {
		if got := w.restartReason(tc.prev, sb); got != tc.want {
			t.Errorf("restartReason(%s) = %s, want %s", tc.prev.c.Id, got, tc.want)
		}
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	var n uint64
	forHistogram(t, reg, name, func(count uint64, _ float64) { n += count })
	return n
}

func histogramSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	var s float64
	forHistogram(t, reg, name, func(_ uint64, sum float64) { s += sum })
	return s
}

func forHistogram(t *testing.T, reg *prometheus.Registry, name string, fn func(count uint64, sum float64)) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				fn(m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum())
			}
		}
	}
}
