package podmanager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/podmanager/status"
)

// Manager owns the desired set of pods and one worker goroutine per pod UID.
type Manager struct {
	cfg     Config
	sysctls *sysctlAllowlist // which sysctls pods may set (admission)
	rt      Runtime
	images  ImageService
	status  *status.Store
	log     *logrus.Entry

	mu       sync.Mutex
	sources  map[string][]*v1.Pod   // guarded by mu: the latest complete set from each source
	workers  map[types.UID]*worker  // guarded by mu
	runCtx   context.Context        // guarded by mu: the agent's context, set by Run
	workerWG sync.WaitGroup         // counts running worker goroutines
	synced   chan struct{}          // closed after the first sync of the first desired set
	relisted map[types.UID]string   // owned by the relist loop: last runtime fingerprint per pod
	firstSet map[types.UID]struct{} // guarded by mu: pods of the first full desired set not yet synced once
	// owners maps sandbox and container IDs to their pod, for events that carry only an ID.
	owners    map[string]types.UID // guarded by mu
	relistNow chan struct{}        // capacity 1: asks the relist loop for a pass now
	lastLoop  atomic.Int64         // UnixNano of the sync loop's last completed relist
}

// New returns a manager; Run starts it.
func New(cfg Config, rt Runtime, images ImageService) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	sysctls, err := newSysctlAllowlist(cfg.AllowedUnsafeSysctls, cfg.KernelRelease)
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:       cfg,
		sysctls:   sysctls,
		rt:        rt,
		images:    images,
		status:    status.NewStore(),
		log:       cfg.Log,
		sources:   map[string][]*v1.Pod{},
		workers:   map[types.UID]*worker{},
		synced:    make(chan struct{}),
		relisted:  map[types.UID]string{},
		owners:    map[string]types.UID{},
		relistNow: make(chan struct{}, 1),
	}, nil
}

// Update replaces the set of pods wanted by source. The desired set is the union of all
// sources keyed by UID. It never blocks on a worker: it records the latest pod and wakes it.
func (m *Manager) Update(source string, pods []*v1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sources[source] = pods
	desired := m.desiredLocked()
	for uid, pod := range desired {
		w, ok := m.workers[uid]
		if !ok {
			w = newWorker(m, uid)
			m.workers[uid] = w
			m.startWorkerLocked(w)
		}
		// A pod being deleted (deletionTimestamp set) is terminated with its deletion grace
		// period, and stays in the desired set until then so its status is still reported.
		deleting := pod.DeletionTimestamp != nil
		// Only a change wakes the worker: a source hands over its whole set on any change
		// (the API source on every status patch of any pod), and a wake is a full sync.
		changed := !ok || w.deleted != deleting || !sameDesired(w.pending, pod)
		w.pending, w.deleted = pod, deleting
		if changed {
			w.poke()
		}
	}
	for uid, w := range m.workers {
		if _, ok := desired[uid]; !ok && !w.deleted {
			w.deleted = true
			w.poke()
		}
	}
	if m.firstSet == nil && m.sourcesReadyLocked() {
		m.firstSet = map[types.UID]struct{}{}
		for uid := range desired {
			m.firstSet[uid] = struct{}{}
		}
		m.maybeSyncedLocked()
		// Pods no source wants can be told apart from pods not loaded yet only now: look for
		// them at once rather than at the next periodic relist.
		m.RequestRelist()
	}
}

// sameDesired reports whether b asks for what a asked for: the same spec and metadata,
// bookkeeping the API server changes on every write (resourceVersion, managedFields) and
// the status aside.
func sameDesired(a, b *v1.Pod) bool {
	if a == nil {
		return false
	}
	am, bm := a.ObjectMeta, b.ObjectMeta
	am.ResourceVersion, bm.ResourceVersion = "", ""
	am.ManagedFields, bm.ManagedFields = nil, nil
	return equality.Semantic.DeepEqual(am, bm) && equality.Semantic.DeepEqual(a.Spec, b.Spec) &&
		sameOthersStatus(a, b)
}

// desiredLocked merges the sources; on a UID clash the first source in name order wins.
func (m *Manager) desiredLocked() map[types.UID]*v1.Pod {
	names := make([]string, 0, len(m.sources))
	for n := range m.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[types.UID]*v1.Pod{}
	for _, n := range names {
		for _, p := range m.sources[n] {
			if _, dup := out[p.UID]; !dup {
				out[p.UID] = p
			}
		}
	}
	return out
}

// sourcesReadyLocked reports whether every configured source has delivered its first set, so
// an absent pod really means "not wanted".
func (m *Manager) sourcesReadyLocked() bool {
	for _, s := range m.cfg.Sources {
		if _, ok := m.sources[s]; !ok {
			return false
		}
	}
	return true
}

func (m *Manager) startWorkerLocked(w *worker) {
	if m.runCtx == nil {
		return // Run starts it
	}
	m.workerWG.Add(1)
	go func() {
		defer m.workerWG.Done()
		w.run(m.runCtx)
	}()
}

// workerDone is called by a worker that has finished terminating its pod. It reports whether
// the worker must exit (true) or carry on because the pod was wanted again meanwhile.
func (m *Manager) workerDone(w *worker) bool {
	m.mu.Lock()
	if !w.deleted {
		m.mu.Unlock()
		return false
	}
	pod := w.pending
	delete(m.workers, w.uid)
	m.status.Delete(w.uid)
	m.markSyncedLocked(w.uid)
	m.mu.Unlock()
	if m.cfg.PodTerminated != nil {
		m.cfg.PodTerminated(pod)
	}
	return true
}

// markSynced records that a pod of the first desired set has been synced once.
func (m *Manager) markSynced(uid types.UID) {
	m.mu.Lock()
	m.markSyncedLocked(uid)
	m.mu.Unlock()
}

func (m *Manager) markSyncedLocked(uid types.UID) {
	if m.firstSet == nil {
		return
	}
	delete(m.firstSet, uid)
	m.maybeSyncedLocked()
}

func (m *Manager) maybeSyncedLocked() {
	if len(m.firstSet) == 0 {
		select {
		case <-m.synced:
		default:
			close(m.synced)
		}
	}
}

// Synced is closed once every source has reported and each pod it wanted was synced once.
func (m *Manager) Synced() <-chan struct{} { return m.synced }

// Alive is nil while the sync loop makes progress: its last relist finished within three
// relist periods. It feeds systemd's watchdog, so a wedged loop gets the agent restarted.
func (m *Manager) Alive() error {
	last := m.lastLoop.Load()
	if last == 0 {
		return errors.New("the sync loop has not run yet")
	}
	if since := m.cfg.Clock.Since(time.Unix(0, last)); since > 3*m.cfg.RelistPeriod {
		return fmt.Errorf("the sync loop has not relisted for %s", since.Round(time.Second))
	}
	return nil
}

// Pods returns every pod the agent runs, with its latest status.
func (m *Manager) Pods() []*v1.Pod { return m.status.List() }

// Run starts the workers and the relist loop, and returns when ctx ends. Cancelling ctx stops
// the agent's loops only; it never kills pods.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.runCtx = ctx
	for _, w := range m.workers {
		m.startWorkerLocked(w)
	}
	m.mu.Unlock()

	t := m.cfg.Clock.NewTicker(m.cfg.RelistPeriod)
	defer t.Stop()
	periodic := true // the first pass, then every tick; not the relists events ask for
	for {
		m.relist(ctx)
		m.lastLoop.Store(m.cfg.Clock.Now().UnixNano())
		if periodic {
			m.removeOrphanVolumes() // reads the disk: the slow safety net only
			m.removeOrphanLogDirs()
		}
		select {
		case <-ctx.Done():
			m.waitWorkers(5 * time.Second)
			return
		case <-t.C():
			periodic = true
		case <-m.relistNow:
			periodic = false
		}
	}
}

func (m *Manager) waitWorkers(limit time.Duration) {
	done := make(chan struct{})
	go func() { m.workerWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		m.log.Warn("some pod workers were still busy at shutdown; they resume after restart")
	}
}

// HandleContainerEvent wakes the worker of the pod a runtime event is about. Events carry the
// pod's UID on the CRI path; on containerd's path only an ID, which relists map to a pod. An
// event about an ID no relist has seen yet (a container created a moment ago) asks for a
// relist, which wakes the pod if its state changed.
func (m *Manager) HandleContainerEvent(containerID, podUID, event string) {
	m.mu.Lock()
	uid := types.UID(podUID)
	if uid == "" {
		uid = m.owners[containerID]
	}
	w := m.workers[uid]
	if w != nil {
		// A deleted task has exited too: after the event stream was re-established, its
		// exit may have come before the subscription, and only the delete after it.
		if event == string(cri.ContainerStopped) || event == string(cri.ContainerDeleted) {
			w.announced[containerID] = m.cfg.Clock.Now()
		}
		w.poke()
	}
	m.mu.Unlock()
	// The bench reads this line's timestamp as "the worker was notified".
	if m.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		m.log.WithFields(logrus.Fields{"containerID": containerID, "event": event, "podUID": uid}).Debug("runtime event")
	}
	if w == nil {
		m.RequestRelist()
	}
}

// own records that id (a sandbox or container a worker just created) belongs to uid, so its
// events wake the worker without a relist.
func (m *Manager) own(id string, uid types.UID) {
	m.mu.Lock()
	m.owners[id] = uid
	m.mu.Unlock()
}

// RequestRelist asks for a relist now, e.g. after the event stream was re-established and
// events may have been missed. It never blocks.
func (m *Manager) RequestRelist() {
	select {
	case m.relistNow <- struct{}{}:
	default:
	}
}

// ownLabels selects what this agent created on this node.
func (m *Manager) ownLabels() map[string]string {
	return map[string]string{cri.LabelManagedBy: "true", cri.LabelNodeName: m.cfg.NodeName}
}

// relist lists the runtime once and wakes the workers of pods whose sandboxes or containers
// changed, the way the kubelet's PLEG does. Pods found in the runtime that no source wants
// (left over from before a restart) get a worker that terminates them.
func (m *Manager) relist(ctx context.Context) {
	sel := m.ownLabels()
	sandboxes, err := m.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	if err != nil {
		if ctx.Err() == nil {
			m.log.WithError(err).Warn("relist: listing pod sandboxes failed")
		}
		return
	}
	containers, err := m.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: sel})
	if err != nil {
		if ctx.Err() == nil {
			m.log.WithError(err).Warn("relist: listing containers failed")
		}
		return
	}
	parts := map[types.UID][]string{}
	sandboxOf := map[types.UID]*runtimeapi.PodSandbox{} // one per pod, to rebuild an orphan from
	owners := map[string]types.UID{}
	for _, s := range sandboxes {
		uid := types.UID(s.Labels[cri.LabelPodUID])
		owners[s.Id] = uid
		parts[uid] = append(parts[uid], "s:"+s.Id+":"+s.State.String())
		sandboxOf[uid] = s
	}
	for _, c := range containers {
		uid := types.UID(c.Labels[cri.LabelPodUID])
		owners[c.Id] = uid
		parts[uid] = append(parts[uid], "c:"+c.Id+":"+c.State.String())
	}
	now := map[types.UID]string{}
	for uid, p := range parts {
		sort.Strings(p)
		now[uid] = strings.Join(p, ",")
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.owners = owners
	for uid, fp := range now {
		if m.relisted[uid] == fp {
			continue
		}
		if w, ok := m.workers[uid]; ok {
			w.poke()
		}
	}
	for uid := range m.relisted {
		if _, ok := now[uid]; !ok {
			if w, ok := m.workers[uid]; ok {
				w.poke()
			}
		}
	}
	m.relisted = now
	if !m.sourcesReadyLocked() {
		return
	}
	for uid, sb := range sandboxOf {
		if _, ok := m.workers[uid]; ok || uid == "" {
			continue
		}
		pod := orphanPod(sb.Labels, sb.Annotations)
		m.log.WithFields(logrus.Fields{"pod": pod.Namespace + "/" + pod.Name, "uid": uid}).
			Info("found a pod in the runtime that no source wants; terminating it")
		w := newWorker(m, uid)
		w.pending, w.deleted = pod, true
		m.workers[uid] = w
		m.startWorkerLocked(w)
		w.poke()
	}
}
