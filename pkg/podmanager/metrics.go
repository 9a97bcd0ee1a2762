package podmanager

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Metrics are the pod manager's Prometheus series, under the kubelet's names where it has
// one:
//
//	kubelet_running_pods                                 pods with a ready sandbox
//	kubelet_running_containers{container_state}          created, running, exited, unknown
//	kubelet_pod_start_duration_seconds                   first sync to every container running
//	kubelet_pod_worker_duration_seconds{operation_type}  create, sync, kill
//	nodeagent_container_restarts_total{reason}           restarts the agent made, by why the
//	                                                     instance before ended
//
// A nil *Metrics records nothing.
type Metrics struct {
	runningPods       prometheus.Gauge
	runningContainers *prometheus.GaugeVec
	podStart          prometheus.Histogram
	workerDuration    *prometheus.HistogramVec
	restarts          *prometheus.CounterVec
}

// Values of kubelet_pod_worker_duration_seconds' operation_type, as the kubelet's SyncPodType
// spells them. The kubelet's "update" (the spec changed) is counted as a sync: a pass is
// level-triggered and does the same work either way.
const (
	workerOpCreate = "create" // the first sync of a pod
	workerOpSync   = "sync"
	workerOpKill   = "kill" // a termination pass
)

// Values of nodeagent_container_restarts_total's reason: a small fixed set, whatever the
// runtime writes in a container's reason.
const (
	RestartReasonCompleted      = "Completed"   // exited 0 (restartPolicy Always)
	RestartReasonError          = "Error"       // exited non-zero
	RestartReasonOOMKilled      = "OOMKilled"   // killed by the kernel's OOM killer
	RestartReasonProbeFailed    = "ProbeFailed" // killed after a liveness or startup probe failed
	RestartReasonPostStartHook  = "PostStartHookFailed"
	RestartReasonSandboxChanged = "SandboxChanged" // the pod sandbox was re-created
)

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		runningPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelet_running_pods",
			Help: "Number of pods that have a running pod sandbox.",
		}),
		runningContainers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubelet_running_containers",
			Help: "Number of containers currently running, by state.",
		}, []string{"container_state"}),
		// The kubelet's buckets: half a second to an hour.
		podStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelet_pod_start_duration_seconds",
			Help:    "Duration in seconds from the agent seeing a pod for the first time to the pod starting to run.",
			Buckets: []float64{0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600},
		}),
		workerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubelet_pod_worker_duration_seconds",
			Help:    "Duration in seconds to sync a single pod. Broken down by operation type: create, sync, or kill.",
			Buckets: prometheus.DefBuckets,
		}, []string{"operation_type"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodeagent_container_restarts_total",
			Help: "Container restarts made by the agent, by why the previous instance ended.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.runningPods, m.runningContainers, m.podStart, m.workerDuration, m.restarts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.init()
	return m, nil
}

// containerStates are the kubelet's container_state values, indexed by CRI state (created,
// running, exited, unknown: the CRI enum's order).
var containerStates = [4]string{"created", "running", "exited", "unknown"}

// runningCounts is one pod's share of the running gauges.
type runningCounts struct {
	pods       int // 1 with a ready sandbox
	containers [len(containerStates)]int
}

// countsOf counts what the runtime holds for one pod, as the worker just observed it.
func countsOf(st *podState) runningCounts {
	var c runningCounts
	if st.readySandbox() != nil {
		c.pods = 1
	}
	for _, ci := range st.containers {
		i := int(ci.state())
		if i < 0 || i >= len(c.containers) {
			i = int(runtimeapi.ContainerState_CONTAINER_UNKNOWN)
		}
		c.containers[i]++
	}
	return c
}

// init sets every gauge to zero, so each state is exported before anything runs.
func (m *Metrics) init() {
	if m == nil {
		return
	}
	m.runningPods.Set(0)
	for _, label := range containerStates {
		m.runningContainers.WithLabelValues(label).Set(0)
	}
}

// moveRunning applies one pod's change from old to now. Each worker adds its own pod's
// difference after every sync, so the gauges are as fresh as the workers' view of the
// runtime (milliseconds after an event), not as old as the last relist, and need no lock.
func (m *Metrics) moveRunning(old, now runningCounts) {
	if m == nil || old == now {
		return
	}
	if d := now.pods - old.pods; d != 0 {
		m.runningPods.Add(float64(d))
	}
	for i, label := range containerStates {
		if d := now.containers[i] - old.containers[i]; d != 0 {
			m.runningContainers.WithLabelValues(label).Add(float64(d))
		}
	}
}

func (m *Metrics) observeWorker(op string, took time.Duration) {
	if m != nil {
		m.workerDuration.WithLabelValues(op).Observe(took.Seconds())
	}
}

func (m *Metrics) observePodStart(took time.Duration) {
	if m != nil {
		m.podStart.Observe(took.Seconds())
	}
}

func (m *Metrics) countRestart(reason string) {
	if m != nil {
		m.restarts.WithLabelValues(reason).Inc()
	}
}
