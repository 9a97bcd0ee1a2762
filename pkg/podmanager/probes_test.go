package podmanager

import (
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
)

// fakeProber holds the results a test sets and the targets the worker asked for.
type fakeProber struct {
	mu      sync.Mutex
	results map[string]prober.Result // containerID/kind
	targets map[types.UID][]prober.Target
	removed []types.UID
}

func newFakeProber() *fakeProber {
	return &fakeProber{results: map[string]prober.Result{}, targets: map[types.UID][]prober.Target{}}
}

func (f *fakeProber) SyncPod(uid types.UID, targets []prober.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targets[uid] = targets
}

func (f *fakeProber) RemovePod(uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.targets, uid)
	f.removed = append(f.removed, uid)
}

func (f *fakeProber) Result(id string, kind prober.Kind) (prober.Result, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.results[id+"/"+string(kind)]
	if !ok {
		return prober.Unknown, ""
	}
	return r, "HTTP probe failed with statuscode: 500"
}

func (f *fakeProber) set(id string, kind prober.Kind, r prober.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[id+"/"+string(kind)] = r
}

func withProber(t *testing.T) (*harness, *fakeProber) {
	h := newHarness(t)
	p := newFakeProber()
	h.m.cfg.Prober = p
	return h, p
}

func httpProbe() *v1.Probe {
	return &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz"}}}
}

func runningID(h *harness, name string) string {
	for _, c := range h.rt.byName(name) {
		if c.c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			return c.c.Id
		}
	}
	return ""
}

func TestProbeTargetsFollowRunningContainers(t *testing.T) {
	h, p := withProber(t)
	c := busybox("web")
	c.LivenessProbe, c.ReadinessProbe = httpProbe(), httpProbe()
	pod := testPod("web", v1.RestartPolicyAlways, c, busybox("plain"))
	h.run(pod)
	h.settle(pod.UID)
	kinds := map[prober.Kind]string{}
	for _, tg := range p.targets[pod.UID] {
		kinds[tg.Kind] = tg.ContainerID
		if tg.ContainerName != "web" || tg.PodIP != "10.88.0.7" || tg.StartedAt.IsZero() {
			t.Errorf("target = %+v", tg)
		}
	}
	if len(kinds) != 2 || kinds[prober.Liveness] != runningID(h, "web") {
		t.Fatalf("targets by kind = %v", kinds)
	}
	h.run()
	h.m.workers[pod.UID].syncOnce(t.Context())
	if len(p.removed) != 1 {
		t.Fatal("the pod's probes were not removed with it")
	}
}

func TestLivenessFailureKillsTheContainerAndItRestarts(t *testing.T) {
	h, p := withProber(t)
	c := busybox("web")
	c.LivenessProbe = httpProbe()
	probeGrace := int64(2)
	c.LivenessProbe.TerminationGracePeriodSeconds = &probeGrace
	pod := testPod("web", v1.RestartPolicyAlways, c)
	h.run(pod)
	h.settle(pod.UID)
	id := runningID(h, "web")
	p.set(id, prober.Liveness, prober.Failure)

	s := h.settle(pod.UID)
	if h.rt.stopTimeouts[id] != 2 {
		t.Fatalf("killed with %ds grace, want the probe's 2s", h.rt.stopTimeouts[id])
	}
	cs := containerState(t, s, "web")
	if cs.RestartCount != 1 || cs.State.Running == nil {
		t.Fatalf("not restarted: %+v", cs)
	}
	if term := cs.LastTerminationState.Terminated; term == nil || !strings.Contains(term.Message, "failed liveness probe") {
		t.Fatalf("last state = %+v, want the probe named", cs.LastTerminationState)
	}
}

func TestReadinessAndStartupDriveReadyAndStarted(t *testing.T) {
	h, p := withProber(t)
	c := busybox("web")
	c.StartupProbe, c.ReadinessProbe = httpProbe(), httpProbe()
	pod := testPod("web", v1.RestartPolicyAlways, c)
	h.run(pod)
	s := h.settle(pod.UID)
	cs := containerState(t, s, "web")
	if *cs.Started || cs.Ready || condition(s, v1.PodReady) != v1.ConditionFalse || s.Phase != v1.PodRunning {
		t.Fatalf("before startup: started %v ready %v Ready %s phase %s", *cs.Started, cs.Ready, condition(s, v1.PodReady), s.Phase)
	}
	id := runningID(h, "web")
	p.set(id, prober.Startup, prober.Success)
	s = h.settle(pod.UID)
	if cs := containerState(t, s, "web"); !*cs.Started || cs.Ready {
		t.Fatalf("after startup: started %v ready %v, want started and not yet ready", *cs.Started, cs.Ready)
	}
	p.set(id, prober.Readiness, prober.Success)
	s = h.settle(pod.UID)
	if cs := containerState(t, s, "web"); !cs.Ready || condition(s, v1.PodReady) != v1.ConditionTrue {
		t.Fatalf("after readiness: ready %v Ready %s", cs.Ready, condition(s, v1.PodReady))
	}
	p.set(id, prober.Readiness, prober.Failure)
	s = h.settle(pod.UID)
	if condition(s, v1.PodReady) != v1.ConditionFalse {
		t.Fatal("Ready did not follow a failing readiness probe")
	}
	for _, c := range s.Conditions {
		if c.Type == v1.PodReady && !strings.Contains(c.Message, "web: Readiness probe failed: HTTP probe failed with statuscode: 500") {
			t.Fatalf("Ready message %q does not say why", c.Message)
		}
	}
}

func TestPreStopRunsBeforeTheStopAndSidecarsStopLastInReverse(t *testing.T) {
	h, _ := withProber(t)
	app := busybox("app")
	app.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"sh", "-c", "drain"}}}}
	pod := testPod("web", v1.RestartPolicyAlways, app, busybox("other"))
	pod.Spec.InitContainers = []v1.Container{sidecar("first"), sidecar("second")}
	h.run(pod)
	for range 4 {
		h.settle(pod.UID)
	}
	if running(h, "app") != 1 || running(h, "second") != 1 {
		t.Fatal("pod did not start fully")
	}
	h.run()
	h.m.workers[pod.UID].syncOnce(t.Context())

	if len(h.rt.execs) != 1 || !strings.HasSuffix(h.rt.execs[0], "sh -c drain") {
		t.Fatalf("preStop execs = %v", h.rt.execs)
	}
	order := strings.Join(h.rt.stopOrder, ",")
	if !strings.HasSuffix(order, ",second,first") || strings.Index(order, "second") < strings.Index(order, "app") {
		t.Fatalf("stop order = %s, want the app containers, then second, then first", order)
	}
	for id, timeout := range h.rt.stopTimeouts {
		if timeout > 7 {
			t.Errorf("container %s stopped with %ds, more than the pod's 7s", id, timeout)
		}
	}
}

func TestFailedPostStartKillsTheContainer(t *testing.T) {
	h, _ := withProber(t)
	c := busybox("web")
	c.Lifecycle = &v1.Lifecycle{PostStart: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"false"}}}}
	pod := testPod("web", v1.RestartPolicyNever, c)
	h.rt.execExit = 1
	h.run(pod)
	s := h.settle(pod.UID)
	cs := containerState(t, s, "web")
	if running(h, "web") != 0 {
		t.Fatal("the container runs although its postStart failed")
	}
	if cs.State.Terminated == nil || !strings.Contains(cs.State.Terminated.Message, "FailedPostStartHook") {
		t.Fatalf("state = %+v", cs.State)
	}
	if s.Phase != v1.PodFailed {
		t.Fatalf("phase = %s, want Failed (restartPolicy Never)", s.Phase)
	}
}

func TestStopSignalMapsToCRI(t *testing.T) {
	for sig, want := range map[v1.Signal]runtimeapi.Signal{
		"":                runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT,
		v1.SIGUSR1:        runtimeapi.Signal_SIGNAL_SIGUSR1,
		v1.SIGRTMINPLUS1:  runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1,
		v1.SIGRTMAXMINUS1: runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1,
	} {
		c := busybox("a")
		if sig != "" {
			s := sig
			c.Lifecycle = &v1.Lifecycle{StopSignal: &s}
		}
		if got := stopSignal(&c); got != want {
			t.Errorf("%q -> %v, want %v", sig, got, want)
		}
	}
}
