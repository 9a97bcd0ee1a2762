package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/network"
	"github.com/nodeagent/nodeagent/pkg/podmanager"
	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
)

// agentMetrics is the agent's one Prometheus registry and what each package records in it.
// The registry belongs to the agent, not to the process: nothing is registered with
// client_golang's global default registry, so tests can build as many agents as they like.
type agentMetrics struct {
	reg    *prometheus.Registry
	cri    *cri.Metrics
	pods   *podmanager.Metrics
	probes *prober.Metrics

	cniOps      *prometheus.CounterVec
	cniDuration *prometheus.HistogramVec
}

// cniCommands bounds nodeagent_cni_operations_total's command label: the delegate passes on
// whatever CNI_COMMAND containerd set.
var cniCommands = map[string]bool{
	network.CommandAdd: true, network.CommandDel: true, network.CommandCheck: true,
	network.CommandStatus: true, network.CommandGC: true, network.CommandVersion: true,
}

// newAgentMetrics builds the registry with the Go runtime and process collectors and every
// package's series.
func newAgentMetrics() (*agentMetrics, error) {
	reg := prometheus.NewRegistry()
	m := &agentMetrics{
		reg: reg,
		cniOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodeagent_cni_operations_total",
			Help: "CNI calls the delegate forwarded to the agent, by command and result (success, error).",
		}, []string{"command", "result"}),
		cniDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nodeagent_cni_operation_duration_seconds",
			Help:    "Duration in seconds of the CNI calls the delegate forwarded, by command.",
			Buckets: prometheus.ExponentialBuckets(.005, 2, 14), // 5ms to 40s
		}, []string{"command"}),
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.cniOps, m.cniDuration,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	var err error
	if m.cri, err = cri.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.pods, err = podmanager.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.probes, err = prober.NewMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// observeCNI records one forwarded CNI call (network.ServiceConfig.Observe).
func (m *agentMetrics) observeCNI(c network.Call) {
	cmd := c.Command
	if !cniCommands[cmd] {
		cmd = "other"
	}
	result := "success"
	if c.Err != nil {
		result = "error"
	}
	m.cniOps.WithLabelValues(cmd, result).Inc()
	m.cniDuration.WithLabelValues(cmd).Observe(c.Took.Seconds())
}
