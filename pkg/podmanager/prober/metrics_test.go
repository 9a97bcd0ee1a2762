package prober

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEveryProbeRunIsCountedUnderTheKubeletsLabels(t *testing.T) {
	h := newHarness(t, 0)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h.m.cfg.Metrics = m
	h.exec.script("ready", pass, fail)
	ready := h.execTarget("c1", Readiness, "ready", nil)
	h.m.SyncPod(podUID, []Target{ready})
	for range 3 {
		h.nextCall()
		h.waitTimers(1)
		h.step(period)
	}
	h.nextCall()
	h.waitTimers(1)

	want := `
# HELP prober_probe_total Cumulative number of a liveness, readiness or startup probe for a container by result.
# TYPE prober_probe_total counter
prober_probe_total{container="app",namespace="default",pod="web",probe_type="Readiness",result="failed"} 3
prober_probe_total{container="app",namespace="default",pod="web",probe_type="Readiness",result="successful"} 1
prober_probe_total{container="app",namespace="default",pod="web",probe_type="Readiness",result="unknown"} 0
`
	// The script's last reply repeats: one success, then three failures.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "prober_probe_total"); err != nil {
		t.Fatal(err)
	}

	// A restarted container's new instance keeps counting in the same series.
	restarted := ready
	restarted.ContainerID = "c1-b"
	old := h.worker("c1", Readiness)
	h.m.SyncPod(podUID, []Target{restarted})
	h.waitDone(old)
	h.nextCall()
	h.waitTimers(1)
	if got := testutil.ToFloat64(m.probes.WithLabelValues("Readiness", "failed", "app", "web", "default")); got != 4 {
		t.Fatalf("failed after the restart = %v, want 4 (the series kept)", got)
	}

	// The pod goes: its series go with it, so the label set does not grow with every pod
	// the node ever ran.
	h.m.RemovePod(podUID)
	if n := testutil.CollectAndCount(m.probes); n != 0 {
		t.Fatalf("%d series left after the pod went, want 0", n)
	}
}
