package podmanager

import (
	"context"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
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
