package cri

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Metrics are the runtime client's Prometheus series, under the kubelet's names so existing
// dashboards and alerts work unchanged:
//
//	kubelet_runtime_operations_total{operation_type}
//	kubelet_runtime_operations_errors_total{operation_type}
//	kubelet_runtime_operations_duration_seconds{operation_type}
//	nodeagent_runtime_event_stream_reconnects_total
//
// operation_type is the CRI method in the kubelet's snake_case form (run_podsandbox,
// create_container, ...). Every unary CRI call is counted, whoever makes it; streams
// (GetContainerEvents) are not operations. A nil *Metrics records nothing.
type Metrics struct {
	ops        *prometheus.CounterVec
	errs       *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	reconnects prometheus.Counter

	// names caches operation_type per gRPC full method name, so a call allocates nothing
	// once its method has been seen. The set of methods is fixed by the CRI API.
	names sync.Map // string -> string
}

// criMethodPrefix starts the full gRPC name of every CRI v1 method.
const criMethodPrefix = "/runtime.v1."

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelet_runtime_operations_total",
			Help: "Cumulative number of runtime operations by operation type.",
		}, []string{"operation_type"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelet_runtime_operations_errors_total",
			Help: "Cumulative number of runtime operation errors by operation type.",
		}, []string{"operation_type"}),
		// The kubelet's buckets: 5ms to about 6 minutes (image pulls).
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubelet_runtime_operations_duration_seconds",
			Help:    "Duration in seconds of runtime operations. Broken down by operation type.",
			Buckets: prometheus.ExponentialBuckets(.005, 2.5, 14),
		}, []string{"operation_type"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodeagent_runtime_event_stream_reconnects_total",
			Help: "Number of times the runtime's container event stream was re-established after it broke.",
		}),
	}
	for _, c := range []prometheus.Collector{m.ops, m.errs, m.duration, m.reconnects} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// unaryInterceptor times and counts every unary call on the CRI connection. It sees the
// call as made, deadline included, so a timed-out call counts as an error of its operation.
// containerd's own API shares the connection when it is on the same socket (the events
// path's confirm call); only CRI methods are runtime operations.
func (m *Metrics) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !strings.HasPrefix(method, criMethodPrefix) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	op := m.operationType(method)
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.ops.WithLabelValues(op).Inc()
	if err != nil {
		m.errs.WithLabelValues(op).Inc()
	}
	return err
}

// streamReconnected counts one re-established event stream.
func (m *Metrics) streamReconnected() {
	if m != nil {
		m.reconnects.Inc()
	}
}

func (m *Metrics) operationType(method string) string {
	if v, ok := m.names.Load(method); ok {
		return v.(string)
	}
	op := OperationType(method)
	m.names.Store(method, op)
	return op
}

// OperationType turns a gRPC method ("/runtime.v1.RuntimeService/RunPodSandbox", or just
// "RunPodSandbox") into the kubelet's operation_type ("run_podsandbox"): snake_case, with
// "PodSandbox" kept as one word, as the kubelet spells it.
func OperationType(method string) string {
	if i := strings.LastIndexByte(method, '/'); i >= 0 {
		method = method[i+1:]
	}
	var b strings.Builder
	for i, r := range method {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return strings.ReplaceAll(b.String(), "pod_sandbox", "podsandbox")
}
