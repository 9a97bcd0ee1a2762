package prober

import (
	"math"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

// The API server accepts any int32 for a probe's seconds fields. Unlike the pod's int64
// grace periods these cannot overflow a time.Duration (math.MaxInt32 s is ~68 years), so
// they are used as they are; these tests hold that the largest of them means "very long".
const maxProbeSeconds = time.Duration(math.MaxInt32) * time.Second

func TestHugeProbeSettingsAreVeryLong(t *testing.T) {
	s := settingsOf(&v1.Probe{InitialDelaySeconds: math.MaxInt32, PeriodSeconds: math.MaxInt32, TimeoutSeconds: math.MaxInt32}, Readiness)
	if s.initialDelay != maxProbeSeconds || s.period != maxProbeSeconds || s.timeout != maxProbeSeconds {
		t.Fatalf("settings = %+v, want %v each", s, maxProbeSeconds)
	}
	// A run that overran by decades still lands on a future multiple of the period.
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(100 * 365 * 24 * time.Hour)
	if next := nextDue(t0, s.period, now); !next.After(now) || next.Sub(now) > s.period {
		t.Fatalf("next run at %v after %v, want within one period", next, now)
	}
}

func TestHugeInitialDelayWaits(t *testing.T) {
	h := newHarness(t, 0)
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Readiness, "ready", func(p *v1.Probe) { p.InitialDelaySeconds = math.MaxInt32 })})
	h.waitTimers(1)
	h.step(10 * 365 * 24 * time.Hour)
	h.waitTimers(1) // still armed
	h.noCall()
}

func TestHugePeriodAndTimeoutRunOnceWithTheWholeTimeout(t *testing.T) {
	h := newHarness(t, 0)
	h.m.SyncPod(podUID, []Target{h.execTarget("c1", Readiness, "ready", func(p *v1.Probe) {
		p.PeriodSeconds, p.TimeoutSeconds = math.MaxInt32, math.MaxInt32
	})})
	if c := h.nextCall(); c.timeout != maxProbeSeconds {
		t.Fatalf("probe ran with timeout %v, want %v", c.timeout, maxProbeSeconds)
	}
	h.waitTimers(1)
	h.step(10 * 365 * 24 * time.Hour)
	h.waitTimers(1)
	h.noCall()
}
