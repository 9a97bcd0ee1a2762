package prober

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
)

func TestThresholdsSettleAndReportOnlyChanges(t *testing.T) {
	h := newHarness(t, 0)
	h.exec.script("check", pass, pass, fail, fail, fail, pass, pass, pass)
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Readiness, "check", func(p *v1.Probe) {
		p.SuccessThreshold, p.FailureThreshold = 2, 3
	})})

	// What each run settles to; Unknown means "no update".
	runs := []struct {
		update Result
		result Result
	}{
		{Unknown, Failure}, // pass 1 of 2: readiness stays at its initial Failure
		{Success, Success}, // pass 2 of 2
		{Unknown, Success}, // fail 1 of 3
		{Unknown, Success}, // fail 2 of 3
		{Failure, Failure}, // fail 3 of 3
		{Unknown, Failure}, // pass 1 of 2
		{Success, Success}, // pass 2 of 2
		{Unknown, Success}, // pass again: no change, no update
	}
	for i, want := range runs {
		if i > 0 {
			h.step(period)
		}
		if c := h.nextCall(); c.id != "c1" || c.cmd[0] != "check" {
			t.Fatalf("run %d: exec %v in %s", i+1, c.cmd, c.id)
		}
		h.waitTimers(1) // the run is over
		if want.update == Unknown {
			h.noUpdate()
		} else if u := h.nextUpdate(); u.Result != want.update || u.Kind != Readiness || u.ContainerID != "c1" || u.PodUID != podUID || u.ContainerName != "app" {
			t.Fatalf("run %d: update %+v, want %v", i+1, u, want.update)
		} else if (u.Message == "") != (u.Result == Success) {
			t.Fatalf("run %d: update %v has message %q", i+1, u.Result, u.Message)
		}
		got, msg := h.m.Result("c1", Readiness)
		if got != want.result {
			t.Fatalf("run %d: Result = %v, want %v", i+1, got, want.result)
		}
		if got == Failure && i == 4 && !strings.Contains(msg, "boom") {
			t.Fatalf("run %d: failure message %q does not carry the output", i+1, msg)
		}
	}
}

func TestLivenessFailureEndsTheProbe(t *testing.T) {
	h := newHarness(t, 0)
	h.exec.script("live", fail)
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Liveness, "live", nil)}) // failureThreshold defaults to 3
	w := h.worker("c1", Liveness)
	for i := range 3 {
		if i > 0 {
			h.waitTimers(1)
			h.noUpdate()
			if r := h.result("c1", Liveness); r != Success {
				t.Fatalf("after %d failures liveness is %v, want its initial Success", i, r)
			}
			h.step(period)
		}
		h.nextCall()
	}
	if u := h.nextUpdate(); u.Result != Failure || !strings.Contains(u.Message, "boom") {
		t.Fatalf("update %+v, want Failure with the output", u)
	}
	// On hold until the container is replaced: the pod worker kills it and the successor is
	// a new target.
	h.waitDone(w)
	if r, msg := h.m.Result("c1", Liveness); r != Failure || !strings.Contains(msg, "boom") {
		t.Fatalf("Result = %v %q, want Failure with the output", r, msg)
	}
	h.waitTimers(0)
	h.step(10 * period)
	h.noCall()
}

func TestUnavailableRuntimeRunsAreNotCounted(t *testing.T) {
	h := newHarness(t, 0)
	unavailable := execReply{err: fmt.Errorf("cri ExecSync c1: %w", errdefs.ErrUnavailable)}
	h.exec.script("live", fail, unavailable, unavailable, fail)
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Liveness, "live", func(p *v1.Probe) { p.FailureThreshold = 2 })})
	for i := range 3 {
		if i > 0 {
			h.step(period)
		}
		h.nextCall()
		h.waitTimers(1)
		h.noUpdate() // the runtime's trouble neither counts as a failure nor breaks the streak
	}
	h.step(period)
	h.nextCall()
	if u := h.nextUpdate(); u.Result != Failure {
		t.Fatalf("update %+v, want Failure after two counted failures", u)
	}
}

func TestFirstRunWaitsForInitialDelayAndJitter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		delay      int32
		startedAgo time.Duration
		jitter     time.Duration
		first      time.Duration // after SyncPod
	}{
		{name: "no delay, no jitter: at once", first: 0},
		{name: "initial delay", delay: 5, first: 5 * time.Second},
		{name: "initial delay then jitter", delay: 5, jitter: 3 * time.Second, first: 8 * time.Second},
		{name: "delay counts from the container's start", delay: 5, startedAgo: 4 * time.Second, jitter: 3 * time.Second, first: 4 * time.Second},
		{name: "delay long over: jitter only", delay: 5, startedAgo: time.Hour, jitter: 3 * time.Second, first: 3 * time.Second},
		{name: "jitter stays within the period", jitter: time.Hour, first: period - time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.jitter)
			target := h.execTarget("c1", Readiness, "ready", func(p *v1.Probe) { p.InitialDelaySeconds = tc.delay })
			target.StartedAt = h.clock.Now().Add(-tc.startedAgo)
			h.m.SyncPod(podUID, []Target{target})
			if tc.first > 0 {
				h.waitTimers(1)
				h.step(tc.first - time.Nanosecond)
				h.waitTimers(1) // still armed: the timer has not fired
				h.noCall()
				h.step(time.Nanosecond)
			}
			h.nextCall()
			h.waitTimers(1)
			h.mu.Lock()
			if len(h.randNs) != 1 || h.randNs[0] != int64(period) {
				t.Errorf("Rand called with %v, want once with the period in ns", h.randNs)
			}
			h.mu.Unlock()

			// Then every period.
			h.step(period - time.Nanosecond)
			h.waitTimers(1)
			h.noCall()
			h.step(time.Nanosecond)
			h.nextCall()
		})
	}
}

func TestStartupGatesLivenessAndReadiness(t *testing.T) {
	h := newHarness(t, 0)
	h.exec.script("startup", fail, fail, pass)
	h.exec.script("live", pass)
	h.exec.script("ready", pass)
	h.m.SyncPod(podUID, []Target{
		// Listed before their startup probe: gating does not depend on the order.
		h.execTarget("c1", Liveness, "live", nil),
		h.execTarget("c1", Readiness, "ready", nil),
		h.execTarget("c1", Startup, "startup", func(p *v1.Probe) { p.FailureThreshold = 5 }),
	})
	startup := h.worker("c1", Startup)

	for i := range 2 {
		if i > 0 {
			h.step(period)
		}
		if c := h.nextCall(); c.cmd[0] != "startup" {
			t.Fatalf("%s ran before the container started", c.cmd[0])
		}
		h.waitTimers(1) // only startup's: the gated probes wait without a timer
		h.noCall()
		for kind, want := range map[Kind]Result{Startup: Unknown, Liveness: Success, Readiness: Failure} {
			if r := h.result("c1", kind); r != want {
				t.Fatalf("%s = %v while starting, want %v", kind, r, want)
			}
		}
	}
	h.noUpdate()

	h.step(period)
	if c := h.nextCall(); c.cmd[0] != "startup" {
		t.Fatalf("ran %v, want startup", c.cmd)
	}
	if u := h.nextUpdate(); u.Kind != Startup || u.Result != Success {
		t.Fatalf("update %+v, want startup Success", u)
	}
	h.waitDone(startup) // startup stops once it succeeded

	// Readiness runs at once, liveness a period later.
	if c := h.nextCall(); c.cmd[0] != "ready" {
		t.Fatalf("ran %v after startup, want ready", c.cmd)
	}
	if u := h.nextUpdate(); u.Kind != Readiness || u.Result != Success {
		t.Fatalf("update %+v, want readiness Success", u)
	}
	h.waitTimers(2)
	h.noCall()
	h.step(period)
	ran := map[string]bool{h.nextCall().cmd[0]: true, h.nextCall().cmd[0]: true}
	if !ran["live"] || !ran["ready"] {
		t.Fatalf("ran %v, want live and ready", ran)
	}
	h.waitTimers(2)
	h.noCall()
	if r := h.result("c1", Startup); r != Success {
		t.Fatalf("startup = %v after it succeeded, want Success", r)
	}
}

func TestStartupFailureKeepsOtherProbesOff(t *testing.T) {
	h := newHarness(t, 0)
	h.exec.script("startup", fail)
	h.m.SyncPod(podUID, []Target{
		h.execTarget("c1", Startup, "startup", func(p *v1.Probe) { p.FailureThreshold = 2 }),
		h.execTarget("c1", Liveness, "live", nil),
		h.execTarget("c1", Readiness, "ready", nil),
	})
	startup := h.worker("c1", Startup)
	h.nextCall()
	h.waitTimers(1)
	h.step(period)
	h.nextCall()
	if u := h.nextUpdate(); u.Kind != Startup || u.Result != Failure {
		t.Fatalf("update %+v, want startup Failure", u)
	}
	h.waitDone(startup)
	h.waitTimers(0)
	h.step(10 * period)
	h.noCall()
	for kind, want := range map[Kind]Result{Startup: Failure, Liveness: Success, Readiness: Failure} {
		if r := h.result("c1", kind); r != want {
			t.Fatalf("%s = %v, want %v", kind, r, want)
		}
	}

	// The container is killed: its probes go, gated ones included.
	live, ready := h.worker("c1", Liveness), h.worker("c1", Readiness)
	h.m.SyncPod(podUID, nil)
	h.waitDone(live)
	h.waitDone(ready)
}

func TestStartupStopsAfterSuccess(t *testing.T) {
	h := newHarness(t, 0)
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Startup, "startup", func(p *v1.Probe) {
		p.SuccessThreshold = 3 // invalid for startup: 1 applies
	})})
	w := h.worker("c1", Startup)
	h.nextCall()
	if u := h.nextUpdate(); u.Result != Success {
		t.Fatalf("update %+v, want Success after one run", u)
	}
	h.waitDone(w)
	h.waitTimers(0)
	h.step(10 * period)
	h.noCall()
	if r := h.result("c1", Startup); r != Success {
		t.Fatalf("startup = %v, want Success", r)
	}
}

func TestRemovedStartupProbeReleasesTheOthers(t *testing.T) {
	h := newHarness(t, 0)
	h.exec.script("startup", fail)
	startup := h.execTarget("c1", Startup, "startup", nil)
	ready := h.execTarget("c1", Readiness, "ready", nil)
	h.m.SyncPod(podUID, []Target{startup, ready})
	h.nextCall()
	h.waitTimers(1)
	h.m.SyncPod(podUID, []Target{ready})
	if c := h.nextCall(); c.cmd[0] != "ready" {
		t.Fatalf("ran %v, want ready once no startup probe holds it", c.cmd)
	}
}

func TestNextDueSkipsMissedRuns(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		now  time.Duration // after the due time of the last run
		want time.Duration
	}{
		{now: 0, want: period},
		{now: period - 1, want: period},
		{now: period, want: period},
		{now: period + 1, want: 2 * period},
		{now: 3*period + 1, want: 4 * period},
	} {
		if got := nextDue(t0, period, t0.Add(tc.now)).Sub(t0); got != tc.want {
			t.Errorf("run due at 0 finished at %v: next at %v, want %v", tc.now, got, tc.want)
		}
	}
}

func TestSettingsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		probe v1.Probe
		kind  Kind
		want  settings
	}{
		{"zero is the Kubernetes defaults", v1.Probe{}, Readiness, settings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 3}},
		{"as given", v1.Probe{InitialDelaySeconds: 4, PeriodSeconds: 2, TimeoutSeconds: 3, SuccessThreshold: 5, FailureThreshold: 6}, Readiness,
			settings{initialDelay: 4 * time.Second, period: 2 * time.Second, timeout: 3 * time.Second, success: 5, failure: 6}},
		{"liveness succeeds once", v1.Probe{SuccessThreshold: 5}, Liveness, settings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 3}},
		{"startup succeeds once", v1.Probe{SuccessThreshold: 5}, Startup, settings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 3}},
		{"negative is default", v1.Probe{InitialDelaySeconds: -1, PeriodSeconds: -1, TimeoutSeconds: -1, SuccessThreshold: -1, FailureThreshold: -1}, Readiness,
			settings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := settingsOf(&tc.probe, tc.kind); got != tc.want {
				t.Errorf("settings = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestEveryFailedRunIsReported: the kubelet raises an Unhealthy event for each failed run,
// below the failure threshold too; runs the runtime could not make are not failures.
func TestEveryFailedRunIsReported(t *testing.T) {
	h := newHarness(t, 0)
	unavailable := execReply{err: fmt.Errorf("cri ExecSync c1: %w", errdefs.ErrUnavailable)}
	h.exec.script("ready", pass, fail, unavailable, fail, pass)
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Readiness, "ready", func(p *v1.Probe) { p.FailureThreshold = 3 })})
	wantFailed := []bool{false, true, false, true, false}
	for i, want := range wantFailed {
		if i > 0 {
			h.step(period)
		}
		h.nextCall()
		h.waitTimers(1)
		select {
		case u := <-h.failed:
			if !want {
				t.Fatalf("run %d: reported failed: %+v", i+1, u)
			}
			if u.Kind != Readiness || u.Result != Failure || u.ContainerID != "c1" || u.PodUID != podUID || !strings.Contains(u.Message, "boom") {
				t.Fatalf("run %d: failure report %+v", i+1, u)
			}
		default:
			if want {
				t.Fatalf("run %d: failed run not reported", i+1)
			}
		}
	}
}
