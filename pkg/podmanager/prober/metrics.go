package prober

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is prober_probe_total{probe_type,result,container,pod,namespace}, the kubelet's
// series: one count per probe run, settled or not. Its labels name containers, so its
// cardinality follows the node's probed containers; a container's series are deleted when
// its last probe of that type goes away, as the kubelet does. A nil *Metrics records nothing.
type Metrics struct {
	probes *prometheus.CounterVec
}

// NewMetrics creates the series and registers it with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{probes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "prober_probe_total",
		Help: "Cumulative number of a liveness, readiness or startup probe for a container by result.",
	}, []string{"probe_type", "result", "container", "pod", "namespace"})}
	if err := reg.Register(m.probes); err != nil {
		return nil, err
	}
	return m, nil
}

// The kubelet's values of result; probe_type's are Kind.Title.
var resultLabels = [...]string{Unknown: "unknown", Success: "successful", Failure: "failed"}

// probeCounters are one probe's three series, resolved once per probe so a run only
// increments.
type probeCounters [len(resultLabels)]prometheus.Counter

func (m *Metrics) countersFor(t *Target) *probeCounters {
	if m == nil {
		return nil
	}
	ns, pod, _ := strings.Cut(t.PodRef, "/")
	var c probeCounters
	for r, label := range resultLabels {
		c[r] = m.probes.WithLabelValues(t.Kind.Title(), label, t.ContainerName, pod, ns)
	}
	return &c
}

// forget deletes the series of t's container and probe type.
func (m *Metrics) forget(t *Target) {
	if m == nil {
		return
	}
	ns, pod, _ := strings.Cut(t.PodRef, "/")
	m.probes.DeletePartialMatch(prometheus.Labels{
		"probe_type": t.Kind.Title(), "container": t.ContainerName, "pod": pod, "namespace": ns,
	})
}
