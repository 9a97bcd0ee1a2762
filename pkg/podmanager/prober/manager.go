package prober

import (
	"bufio"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"sync"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Config holds what the manager needs. Required fields are marked; the rest have defaults.
type Config struct {
	Exec Execer        // required: runs exec probes
	Log  *logrus.Entry // required
	// OnChange is told every change of a settled result. Required; it is called from the
	// probe goroutines, one call at a time per probe, and must not block long.
	OnChange func(Update)
	// OnFailure, if set, is told every failed run, settled or not, with its message: the
	// kubelet raises an Unhealthy event for each one. Called like OnChange; must not block.
	OnFailure func(Update)
	// Clock schedules the runs; default the real clock. Timeouts of the runs themselves are
	// real time: they bound network and runtime calls.
	Clock clock.WithTicker
	// Metrics counts probe runs (prober_probe_total); nil counts nothing.
	Metrics *Metrics
	// Rand returns a value in [0, n) for the first-run jitter, n being the period in
	// nanoseconds; default math/rand/v2. Tests make it 0.
	Rand func(n int64) int64
}

func (c *Config) setDefaults() error {
	if c.Exec == nil {
		return errors.New("prober: Exec is required")
	}
	if c.Log == nil {
		return errors.New("prober: Log is required")
	}
	if c.OnChange == nil {
		return errors.New("prober: OnChange is required")
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Rand == nil {
		c.Rand = rand.Int64N
	}
	return nil
}

// probeKey names one probe of one container instance.
type probeKey struct {
	containerID string
	kind        Kind
}

// Manager runs the probes of every pod: one goroutine per target.
type Manager struct {
	cfg Config
	log *logrus.Entry

	// Shared by every probe: one dialer, one TLS configuration, the HTTP response readers,
	// one set of gRPC dial options.
	dialer    *net.Dialer
	tlsConfig *tls.Config
	readers   sync.Pool // of *bufio.Reader
	grpcOpts  []grpc.DialOption

	mu      sync.Mutex
	pods    map[types.UID]map[probeKey]*worker // guarded by mu: each pod's targets
	byKey   map[probeKey]*worker               // guarded by mu: the same workers, for Result
	gen     uint64                             // guarded by mu: counts SyncPod passes, marks what a pass listed
	stopped bool                               // guarded by mu
	wg      sync.WaitGroup                     // counts probe goroutines
}

// New returns a manager with no probes.
func New(cfg Config) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	dialer := probeDialer()
	m := &Manager{
		cfg:    cfg,
		log:    cfg.Log,
		dialer: dialer,
		pods:   map[types.UID]map[probeKey]*worker{},
		byKey:  map[probeKey]*worker{},
	}
	m.tlsConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the kubelet does not verify probe certificates either
	m.readers.New = func() any { return bufio.NewReaderSize(nil, 4<<10) }
	m.grpcOpts = grpcDialOptions(dialer)
	return m, nil
}

// SyncPod makes the running probe goroutines of one pod match targets: it starts the
// missing ones and stops those whose (ContainerID, Kind) is no longer listed. It is
// level-triggered and idempotent, allocates nothing when nothing changed, and never waits
// for a goroutine.
func (m *Manager) SyncPod(uid types.UID, targets []Target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	m.gen++
	gen := m.gen
	probes := m.pods[uid]
	var fresh []*worker
	for i := range targets {
		t := &targets[i]
		k := probeKey{t.ContainerID, t.Kind}
		if w := probes[k]; w != nil {
			w.seen = gen
			continue
		}
		if other := m.byKey[k]; other != nil {
			m.log.WithFields(logrus.Fields{"uid": uid, "otherUID": other.target.PodUID, "containerID": t.ContainerID, "probe": t.Kind}).
				Error("probe target is already listed by another pod; ignoring it")
			continue
		}
		w := m.newWorker(t)
		w.seen = gen
		if probes == nil {
			probes = map[probeKey]*worker{}
			m.pods[uid] = probes
		}
		probes[k] = w
		m.byKey[k] = w
		if w.handler != nil {
			fresh = append(fresh, w)
		}
	}

	var ungate []*worker
	for k, w := range probes {
		if w.seen == gen {
			continue
		}
		m.removeLocked(probes, k, w)
		if w.started != nil {
			ungate = append(ungate, w)
		}
	}
	// A startup probe that goes away while its container's other probes stay no longer
	// holds them back (the kubelet: no startup worker means started). Their own removal
	// above comes first, so a removed probe never takes this for a go.
	for _, w := range ungate {
		w.markStarted()
	}
	if len(probes) == 0 {
		delete(m.pods, uid)
	}

	for _, w := range fresh {
		if w.target.Kind != Startup {
			if s := probes[probeKey{w.target.ContainerID, Startup}]; s != nil && s.started != nil {
				w.gate = s.started
			}
		}
	}
	for _, w := range fresh {
		m.wg.Add(1)
		go w.run()
	}
}

// RemovePod stops every probe of the pod. Like SyncPod it does not wait for the goroutines,
// which end as soon as their run in flight is cancelled.
func (m *Manager) RemovePod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	probes := m.pods[uid]
	for k, w := range probes {
		m.removeLocked(probes, k, w)
	}
	delete(m.pods, uid)
}

// removeLocked cancels w and forgets it; its result is Unknown from now on. The series of
// its container and kind go too, unless a probe of the same container and kind stays (a
// restarted container's new instance, listed in the same SyncPod pass), which keeps counting.
func (m *Manager) removeLocked(probes map[probeKey]*worker, k probeKey, w *worker) {
	w.removed = true
	w.cancel()
	delete(probes, k)
	if m.byKey[k] == w {
		delete(m.byKey, k)
	}
	if w.counters == nil {
		return
	}
	for _, o := range probes {
		if o.target.ContainerName == w.target.ContainerName && o.target.Kind == w.target.Kind {
			return
		}
	}
	m.cfg.Metrics.forget(&w.target)
}

// count records one run's outcome, unless the probe was removed meanwhile (its series may be
// gone; counting would bring them back).
func (m *Manager) count(w *worker, r Result) {
	if w.counters == nil || int(r) >= len(w.counters) {
		return
	}
	m.mu.Lock()
	if !w.removed {
		w.counters[r].Inc()
	}
	m.mu.Unlock()
}

// Result is the current settled result of (containerID, kind) and, when it is Failure, the
// message of the latest failed run. Before a probe settles it reports the kubelet's initial
// values: readiness Failure, liveness Success, startup Unknown. No target (or one ignored for
// having no handler) reports Unknown.
func (m *Manager) Result(containerID string, kind Kind) (Result, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.byKey[probeKey{containerID, kind}]
	if w == nil || w.handler == nil {
		return Unknown, ""
	}
	return w.result, w.message
}

// Stop stops every probe and waits for the goroutines to exit. SyncPod does nothing after it.
func (m *Manager) Stop() {
	m.mu.Lock()
	if !m.stopped {
		m.stopped = true
		for uid, probes := range m.pods {
			for k, w := range probes {
				m.removeLocked(probes, k, w)
			}
			delete(m.pods, uid)
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// settle records a settled result and reports whether it changed. A probe removed meanwhile
// changes nothing: its run was cancelled, not answered.
func (m *Manager) settle(w *worker, r Result, msg string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.removed {
		return false
	}
	w.message = msg
	if w.result == r {
		return false
	}
	w.result = r
	return true
}

// jitter is the first run's random offset within one period.
func (m *Manager) jitter(period int64) int64 {
	if period <= 0 {
		return 0
	}
	return min(max(m.cfg.Rand(period), 0), period-1)
}
