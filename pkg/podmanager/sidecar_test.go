package podmanager

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

func sidecar(name string) v1.Container {
	c := busybox(name)
	always := v1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	return c
}

func running(h *harness, name string) int {
	n := 0
	for _, c := range h.rt.byName(name) {
		if c.c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			n++
		}
	}
	return n
}

func TestSidecarStartsInOrderAndKeepsRunningBesideApps(t *testing.T) {
	h := newHarness(t)
	pod := testPod("side", v1.RestartPolicyAlways, busybox("app"))
	pod.Spec.InitContainers = []v1.Container{sidecar("proxy"), busybox("migrate")}
	h.run(pod)

	h.settle(pod.UID)
	if running(h, "proxy") != 1 || len(h.rt.byName("migrate")) != 1 || len(h.rt.byName("app")) != 0 {
		t.Fatal("the sidecar must run, then the next init container, before the app")
	}
	h.rt.exit("migrate", 0)
	s := h.settle(pod.UID)
	if running(h, "proxy") != 1 || running(h, "app") != 1 {
		t.Fatal("sidecar and app must both run after initialization")
	}
	if s.Phase != v1.PodRunning || condition(s, v1.PodInitialized) != v1.ConditionTrue {
		t.Fatalf("phase %s initialized %s", s.Phase, condition(s, v1.PodInitialized))
	}
	if cs := containerState(t, s, "proxy"); cs.State.Running == nil || !cs.Ready {
		t.Fatalf("sidecar status = %+v", cs)
	}
}

func TestExitedSidecarIsRestartedWithoutDisturbingApps(t *testing.T) {
	h := newHarness(t)
	pod := testPod("side", v1.RestartPolicyNever, busybox("app"))
	pod.Spec.InitContainers = []v1.Container{sidecar("proxy")}
	h.run(pod)
	h.settle(pod.UID)
	h.settle(pod.UID)
	appCreates := len(h.rt.byName("app"))

	h.rt.exit("proxy", 1)
	s := h.settle(pod.UID)
	if running(h, "proxy") != 1 {
		t.Fatal("a sidecar must be restarted even under restartPolicy Never")
	}
	if len(h.rt.byName("app")) != appCreates || running(h, "app") != 1 {
		t.Fatal("restarting the sidecar touched the app container")
	}
	if cs := containerState(t, s, "proxy"); cs.RestartCount != 1 {
		t.Fatalf("sidecar restart count = %d", cs.RestartCount)
	}
	if condition(s, v1.PodInitialized) != v1.ConditionTrue {
		t.Fatal("a sidecar restart must not undo Initialized")
	}
}

func TestPodWithSidecarSucceedsWhenAppsFinish(t *testing.T) {
	h := newHarness(t)
	pod := testPod("job", v1.RestartPolicyNever, busybox("work"))
	pod.Spec.InitContainers = []v1.Container{sidecar("proxy")}
	h.run(pod)
	h.settle(pod.UID)
	h.rt.exit("work", 0)
	s := h.settle(pod.UID)
	if s.Phase != v1.PodSucceeded {
		t.Fatalf("phase = %s, want Succeeded (sidecars do not keep a job alive)", s.Phase)
	}
	if running(h, "proxy") != 0 {
		t.Fatal("the sidecar outlived the finished pod")
	}
}

func TestCrashBackoffCountsFromTheExitAndSaysWhatIsLeft(t *testing.T) {
	h := newHarness(t)
	pod := testPod("crash", v1.RestartPolicyAlways, busybox("main"))
	h.run(pod)
	h.settle(pod.UID)
	h.rt.exit("main", 1)
	h.settle(pod.UID) // immediate first restart; the next one waits 10s after its exit

	// The restarted instance runs 4s, then crashes.
	h.clk.Step(4 * time.Second)
	h.rt.mu.Lock()
	h.rt.now = h.clk.Now().UnixNano()
	h.rt.mu.Unlock()
	h.rt.exit("main", 1)
	h.clk.Step(time.Second)
	s := h.settle(pod.UID)
	w := containerState(t, s, "main").State.Waiting
	if w == nil || w.Reason != "CrashLoopBackOff" || !strings.Contains(w.Message, "(next restart in 9s)") {
		t.Fatalf("waiting = %+v, want CrashLoopBackOff with 9s left (10s from the exit)", w)
	}
	h.clk.Step(9*time.Second + time.Millisecond) // the fake runtime stamps the exit 1µs late
	if cs := containerState(t, h.settle(pod.UID), "main"); cs.State.Running == nil {
		t.Fatalf("not restarted when the backoff ran out: %+v", cs.State)
	}
}

func TestRestartCountComesFromTheRuntimeAnnotation(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	// As if an earlier agent had restarted it 5 times.
	for _, c := range h.rt.byName("a") {
		c.c.Annotations[cri.AnnotationRestartCount] = "5"
	}
	h.rt.exit("a", 1)
	s := h.settle(pod.UID)
	if cs := containerState(t, s, "a"); cs.RestartCount != 6 {
		t.Fatalf("restart count = %d, want 6", cs.RestartCount)
	}
	for _, c := range h.rt.byName("a") {
		if c.c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && (c.cfg.LogPath != "a/6.log" || c.cfg.Annotations[cri.AnnotationRestartCount] != "6") {
			t.Fatalf("new instance log %q annotation %q", c.cfg.LogPath, c.cfg.Annotations[cri.AnnotationRestartCount])
		}
	}
}

func TestSandboxRecreationRunsInitContainersAgain(t *testing.T) {
	h := newHarness(t)
	pod := testPod("init", v1.RestartPolicyAlways, busybox("app"))
	pod.Spec.InitContainers = []v1.Container{busybox("setup")}
	h.run(pod)
	h.settle(pod.UID)
	h.rt.exit("setup", 0)
	h.settle(pod.UID)
	for id := range h.rt.sandboxes {
		_ = h.rt.StopPodSandbox(t.Context(), id)
	}
	h.settle(pod.UID)
	if running(h, "setup") != 1 || running(h, "app") != 0 {
		t.Fatal("a new sandbox must run the init containers again before the app")
	}
}

func TestRuntimeEventsWakeTheirPodOrAskForARelist(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	w := h.m.workers[pod.UID]
	drain := func() {
		select {
		case <-w.wake:
		default:
		}
	}
	drain()
	h.m.HandleContainerEvent("c-any", string(pod.UID), "stopped")
	select {
	case <-w.wake:
	default:
		t.Fatal("an event carrying the pod UID did not wake its worker")
	}

	h.m.relist(t.Context()) // learns which pod owns which container
	var id string
	for _, c := range h.rt.byName("a") {
		id = c.c.Id
	}
	drain()
	h.m.HandleContainerEvent(id, "", "stopped")
	select {
	case <-w.wake:
	default:
		t.Fatal("an event with only a container ID did not wake its pod's worker")
	}
	h.m.HandleContainerEvent("never-seen", "", "created")
	select {
	case <-h.m.relistNow:
	default:
		t.Fatal("an event about an unknown container did not ask for a relist")
	}
}

func TestAnnouncedExitIsAwaitedUntilCRIShowsIt(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	var id string
	for _, c := range h.rt.byName("a") {
		id = c.c.Id
	}
	w := h.m.workers[pod.UID]
	// containerd announced the exit; its CRI view still says running.
	h.m.HandleContainerEvent(id, string(pod.UID), "stopped")
	if next, _ := w.syncOnce(t.Context()); next != announcedExitRetry {
		t.Fatalf("next look in %v, want %v while the exit is not visible", next, announcedExitRetry)
	}
	h.rt.exit("a", 1)
	h.settle(pod.UID)
	if running(h, "a") != 1 || len(h.rt.byName("a")) != 2 {
		t.Fatal("the exit was not acted on once visible")
	}
	if len(w.announced) != 0 {
		t.Fatal("the announced exit was not forgotten once seen")
	}
	// An announcement CRI is slow to confirm is awaited less eagerly after a while, and
	// given up (left to the relist) in the end.
	var current string
	for _, c := range h.rt.byName("a") {
		if c.c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			current = c.c.Id
		}
	}
	h.m.HandleContainerEvent(current, string(pod.UID), "stopped")
	for _, step := range []struct {
		after time.Duration
		want  time.Duration
	}{{0, announcedExitRetry}, {announcedExitFast, announcedExitSlowRetry}, {announcedExitWait - announcedExitFast, h.m.cfg.ResyncPeriod}} {
		h.clk.Step(step.after)
		if next, _ := w.syncOnce(t.Context()); next != step.want {
			t.Fatalf("%v later: next look in %v, want %v", step.after, next, step.want)
		}
	}
	if len(w.announced) != 0 {
		t.Fatal("kept an announcement CRI never confirmed")
	}
}

// TestATaskDeleteAnnouncesAnExitToo: right after containerd's event stream was
// re-established, an exit may have come before the subscription and only the task's delete
// after it. The delete is awaited like an exit until CRI shows it.
func TestATaskDeleteAnnouncesAnExitToo(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	h.settle(pod.UID)
	id := h.rt.byName("a")[0].c.Id
	w := h.m.workers[pod.UID]
	h.m.HandleContainerEvent(id, string(pod.UID), string(cri.ContainerDeleted))
	if next, _ := w.syncOnce(t.Context()); next != announcedExitRetry {
		t.Fatalf("next look in %v, want %v while the exit is not visible", next, announcedExitRetry)
	}
	h.rt.exit("a", 1)
	h.settle(pod.UID)
	if running(h, "a") != 1 || len(h.rt.byName("a")) != 2 {
		t.Fatal("the exit was not acted on once visible")
	}
}
