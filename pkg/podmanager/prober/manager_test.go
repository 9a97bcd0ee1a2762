package prober

import (
	"bytes"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
)

func TestNewRequiresExecLogAndOnChange(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	exec := newFakeExec()
	onChange := func(Update) {}
	for name, cfg := range map[string]Config{
		"no Exec":     {Log: log, OnChange: onChange},
		"no Log":      {Exec: exec, OnChange: onChange},
		"no OnChange": {Exec: exec, Log: log},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	m, err := New(Config{Exec: exec, Log: log, OnChange: onChange})
	if err != nil {
		t.Fatal(err)
	}
	m.Stop()
}

func TestResultBeforeTheFirstRun(t *testing.T) {
	h := newHarness(t, 0)
	delayed := func(p *v1.Probe) { p.InitialDelaySeconds = 60 }
	h.m.SyncPod(podUID, []Target{
		h.execTarget("c1", Liveness, "live", delayed),
		h.execTarget("c1", Readiness, "ready", delayed),
		h.execTarget("c2", Startup, "startup", delayed),
	})
	for _, tc := range []struct {
		id   string
		kind Kind
		want Result
	}{
		{"c1", Liveness, Success},  // alive until proven dead
		{"c1", Readiness, Failure}, // not ready until proven so
		{"c2", Startup, Unknown},   // not known to have started
		{"c1", Startup, Unknown},   // no such target
		{"c3", Readiness, Unknown}, // no such container
	} {
		if r, msg := h.m.Result(tc.id, tc.kind); r != tc.want || msg != "" {
			t.Errorf("Result(%s, %s) = %v %q, want %v", tc.id, tc.kind, r, msg, tc.want)
		}
	}
	h.noCall()
}

func TestSyncPodIsIdempotent(t *testing.T) {
	h := newHarness(t, 0)
	targets := []Target{
		h.execTarget("c1", Readiness, "ready", func(p *v1.Probe) { p.InitialDelaySeconds = 5 }),
		h.execTarget("c1", Liveness, "live", func(p *v1.Probe) { p.InitialDelaySeconds = 5 }),
	}
	h.m.SyncPod(podUID, targets)
	ready, live := h.worker("c1", Readiness), h.worker("c1", Liveness)
	h.waitTimers(2)

	for range 3 {
		h.m.SyncPod(podUID, targets)
		h.m.SyncPod(podUID, append(targets, targets...)) // listed twice is still one probe
	}
	if h.worker("c1", Readiness) != ready || h.worker("c1", Liveness) != live {
		t.Fatal("SyncPod replaced a running probe")
	}
	if n := probeGoroutines(); n != 2 {
		t.Fatalf("%d probe goroutines for 2 probes", n)
	}
	h.waitTimers(2)
	h.step(5 * time.Second)
	h.nextCall()
	h.nextCall()
	h.waitTimers(2)
	h.noCall()

	allocs := testing.AllocsPerRun(100, func() { h.m.SyncPod(podUID, targets) })
	if allocs != 0 {
		t.Errorf("SyncPod with nothing changed allocates %v times", allocs)
	}
}

func TestUnlistedTargetsStop(t *testing.T) {
	h := newHarness(t, 0)
	ready := h.execTarget("c1", Readiness, "ready", nil)
	live := h.execTarget("c1", Liveness, "live", nil)
	h.m.SyncPod(podUID, []Target{ready, live})
	h.nextCall()
	h.nextCall()
	h.waitTimers(2)
	if u := h.nextUpdate(); u.Kind != Readiness || u.Result != Success {
		t.Fatalf("update %+v, want readiness Success", u)
	}
	wReady, wLive := h.worker("c1", Readiness), h.worker("c1", Liveness)

	h.m.SyncPod(podUID, []Target{live})
	h.waitDone(wReady)
	if r := h.result("c1", Readiness); r != Unknown {
		t.Fatalf("a removed probe reports %v, want Unknown", r)
	}
	h.waitTimers(1)
	h.step(period)
	if c := h.nextCall(); c.cmd[0] != "live" {
		t.Fatalf("ran %v, want only live", c.cmd)
	}
	h.waitTimers(1)
	h.noCall()

	// A restarted container is a new target: the old instance's probe stops, the new one
	// starts from the initial result.
	h.exec.script("live", fail)
	h.m.SyncPod(podUID, []Target{live})
	h.step(period)
	h.nextCall()
	h.waitTimers(1)
	restarted := live
	restarted.ContainerID = "c1-b"
	h.m.SyncPod(podUID, []Target{restarted})
	h.waitDone(wLive)
	if c := h.nextCall(); c.id != "c1-b" {
		t.Fatalf("ran in %s, want the new instance", c.id)
	}
	wNew := h.worker("c1-b", Liveness)

	h.m.RemovePod(podUID)
	h.waitDone(wNew)
	if r := h.result("c1-b", Liveness); r != Unknown {
		t.Fatalf("a removed pod's probe reports %v, want Unknown", r)
	}
	h.waitTimers(0)
	h.noUpdate()
	eventually(t, "no probe goroutine left", func() bool { return probeGoroutines() == 0 })
}

func TestStopWaitsForProbesInFlight(t *testing.T) {
	h := newHarness(t, 0)
	h.exec.script("ready", execReply{block: true})
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Readiness, "ready", nil)})
	w := h.worker("c1", Readiness)
	h.nextCall()
	if n := h.exec.returned.Load(); n != 0 {
		t.Fatalf("%d execs returned before Stop", n)
	}
	h.m.Stop()
	select {
	case <-w.done:
	default:
		t.Fatal("Stop returned before the probe goroutine exited")
	}
	if n := h.exec.returned.Load(); n != 1 {
		t.Fatalf("%d execs returned after Stop, want 1", n)
	}
	if n := probeGoroutines(); n != 0 {
		t.Fatalf("%d probe goroutines after Stop", n)
	}
	h.noUpdate() // a cancelled run is not a failure

	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Readiness, "ready", nil)})
	h.waitTimers(0)
	h.noCall()
	if r := h.result("c1", Readiness); r != Unknown {
		t.Fatalf("Result after Stop = %v, want Unknown", r)
	}
}

func TestRemovingAProbeMidRunReportsNothing(t *testing.T) {
	h := newHarness(t, 0)
	h.exec.script("live", execReply{block: true})
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Liveness, "live", func(p *v1.Probe) { p.FailureThreshold = 1 })})
	w := h.worker("c1", Liveness)
	h.nextCall()
	h.m.RemovePod(podUID)
	h.waitDone(w)
	h.noUpdate()
}

func TestTargetWithoutHandlerIsIgnoredAndLoggedOnce(t *testing.T) {
	h := newHarness(t, 0)
	bad := h.execTarget("c1", Readiness, "ready", nil)
	bad.Probe = &v1.Probe{}
	for range 3 {
		h.m.SyncPod(podUID, []Target{bad})
	}
	errors := 0
	for _, e := range h.logs.AllEntries() {
		if e.Level == logrus.ErrorLevel {
			errors++
		}
	}
	if errors != 1 {
		t.Fatalf("%d error logs, want 1", errors)
	}
	if r := h.result("c1", Readiness); r != Unknown {
		t.Fatalf("an ignored probe reports %v, want Unknown", r)
	}
	h.waitTimers(0)
	h.noCall()
	h.m.SyncPod(podUID, nil)
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if len(h.m.pods) != 0 || len(h.m.byKey) != 0 {
		t.Fatalf("an unlisted ignored probe is still known: %v %v", h.m.pods, h.m.byKey)
	}
}

// probeGoroutines counts the goroutines running a probe, in every manager of the test binary
// (tests do not run in parallel).
func probeGoroutines() int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	return bytes.Count(buf.Bytes(), []byte("prober.(*worker).run("))
}
