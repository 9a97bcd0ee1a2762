package prober

import (
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
)

// wait bounds every wait for something the goroutines do; tests never sleep for timing.
const wait = 5 * time.Second

const (
	podUID = types.UID("uid-1")
	period = 10 * time.Second
)

// harness is a manager on a fake clock with a fake runtime, recording what it reports.
type harness struct {
	t       *testing.T
	m       *Manager
	clock   *testingclock.FakeClock
	exec    *fakeExec
	updates chan Update
	failed  chan Update // every failed run (OnFailure)
	logs    *logtest.Hook

	mu     sync.Mutex
	randNs []int64 // guarded by mu: the n of every Rand call
}

func newHarness(t *testing.T, jitter time.Duration) *harness {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	h := &harness{
		t:       t,
		clock:   testingclock.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)),
		exec:    newFakeExec(),
		updates: make(chan Update, 100),
		failed:  make(chan Update, 100),
		logs:    hook,
	}
	m, err := New(Config{
		Exec:      h.exec,
		Log:       logrus.NewEntry(logger),
		OnChange:  func(u Update) { h.updates <- u },
		OnFailure: func(u Update) { h.failed <- u },
		Clock:     h.clock,
		Rand: func(n int64) int64 {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.randNs = append(h.randNs, n)
			return int64(jitter)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(m.Stop)
	return h
}

// eventually waits until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitTimers waits until n probe timers are armed. A probe arms its timer only after a run
// has finished (thresholds applied, OnChange called), so this also marks a quiet point.
func (h *harness) waitTimers(n int) {
	h.t.Helper()
	eventually(h.t, "armed timers", func() bool { return h.clock.Waiters() == n })
}

func (h *harness) step(d time.Duration) { h.clock.Step(d) }

// nextCall returns the next exec the probes made.
func (h *harness) nextCall() execCall {
	h.t.Helper()
	select {
	case c := <-h.exec.calls:
		return c
	case <-time.After(wait):
		h.t.Fatal("timed out waiting for a probe run")
	}
	return execCall{}
}

// noCall checks that no probe has run since the last nextCall; call it at a quiet point.
func (h *harness) noCall() {
	h.t.Helper()
	select {
	case c := <-h.exec.calls:
		h.t.Fatalf("unexpected probe run %v", c.cmd)
	default:
	}
}

func (h *harness) nextUpdate() Update {
	h.t.Helper()
	select {
	case u := <-h.updates:
		return u
	case <-time.After(wait):
		h.t.Fatal("timed out waiting for an update")
	}
	return Update{}
}

func (h *harness) noUpdate() {
	h.t.Helper()
	select {
	case u := <-h.updates:
		h.t.Fatalf("unexpected update %+v", u)
	default:
	}
}

// worker returns the running worker of (id, kind), nil if none.
func (h *harness) worker(id string, kind Kind) *worker {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	return h.m.byKey[probeKey{id, kind}]
}

// waitDone waits for a worker's goroutine to exit.
func (h *harness) waitDone(w *worker) {
	h.t.Helper()
	select {
	case <-w.done:
	case <-time.After(wait):
		h.t.Fatalf("probe goroutine %s of %s did not exit", w.target.Kind, w.target.ContainerID)
	}
}

func (h *harness) result(id string, kind Kind) Result {
	r, _ := h.m.Result(id, kind)
	return r
}

// execTarget is a probe of container id running cmd; edit tweaks the probe.
func (h *harness) execTarget(id string, kind Kind, cmd string, edit func(*v1.Probe)) Target {
	p := &v1.Probe{
		ProbeHandler:  v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{cmd}}},
		PeriodSeconds: int32(period / time.Second),
	}
	if edit != nil {
		edit(p)
	}
	return Target{
		PodUID:        podUID,
		PodRef:        "default/web",
		ContainerName: "app",
		ContainerID:   id,
		PodIP:         "127.0.0.1",
		Kind:          kind,
		Probe:         p,
		StartedAt:     h.clock.Now(),
	}
}
