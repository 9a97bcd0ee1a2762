package podmanager

import (
	"context"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
)

type recordedEvent struct{ kind, reason, message string }

type fakeRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (f *fakeRecorder) Event(_ *v1.Pod, eventType, reason, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, recordedEvent{eventType, reason, message})
}

func (f *fakeRecorder) reasons() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		out = append(out, e.reason)
	}
	return strings.Join(out, ",")
}

func TestEventsFollowThePodsLifeWithoutRepeats(t *testing.T) {
	h := newHarness(t)
	rec := &fakeRecorder{}
	h.m.cfg.Events = rec
	pod := testPod("crash", v1.RestartPolicyAlways, busybox("main"))
	h.run(pod)
	h.settle(pod.UID)
	if got := rec.reasons(); got != "Pulled,Created,Started" {
		t.Fatalf("start events %s", got)
	}

	h.rt.exit("main", 1)
	h.settle(pod.UID) // immediate restart
	h.rt.exit("main", 1)
	h.settle(pod.UID) // backing off
	w := h.m.workers[pod.UID]
	for i := 0; i < 3; i++ {
		w.syncOnce(context.Background()) // passes while the wait lasts raise nothing more
	}
	want := "Pulled,Created,Started,Pulled,Created,Started,BackOff"
	if got := rec.reasons(); got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
	last := rec.events[len(rec.events)-1]
	if last.kind != v1.EventTypeWarning || last.message != "Back-off restarting failed container main in pod crash" {
		t.Errorf("backoff event %+v", last)
	}
}

// TestProbeFailuresRaiseUnhealthyWithTheKubeletsWording: each failed run, of any probe kind,
// is one Warning Unhealthy event on the pod; a pod no longer wanted raises none.
func TestProbeFailuresRaiseUnhealthyWithTheKubeletsWording(t *testing.T) {
	h := newHarness(t)
	rec := &fakeRecorder{}
	h.m.cfg.Events = rec
	pod := testPod("web", v1.RestartPolicyAlways, busybox("main"))
	h.run(pod)
	h.settle(pod.UID)
	before := len(rec.events)

	h.m.ProbeFailed(prober.Update{PodUID: pod.UID, ContainerName: "main", Kind: prober.Readiness,
		Result: prober.Failure, Message: "HTTP probe failed with statuscode: 503"})
	h.m.ProbeFailed(prober.Update{PodUID: pod.UID, ContainerName: "main", Kind: prober.Liveness,
		Result: prober.Failure, Message: "dial tcp 10.0.0.2:80: connect: connection refused"})
	h.m.ProbeFailed(prober.Update{PodUID: "gone", Kind: prober.Readiness, Result: prober.Failure, Message: "x"})

	got := rec.events[before:]
	want := []recordedEvent{
		{v1.EventTypeWarning, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"},
		{v1.EventTypeWarning, "Unhealthy", "Liveness probe failed: dial tcp 10.0.0.2:80: connect: connection refused"},
	}
	if len(got) != len(want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
