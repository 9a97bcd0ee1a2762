package podmanager

import (
	"context"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/podmanager/backoff"
)

// worker syncs one pod UID. Only its own goroutine runs sync and terminate, so the fields it
// owns need no lock; what Update writes (pending, deleted) is guarded by the manager's mu.
type worker struct {
	m    *Manager
	uid  types.UID
	wake chan struct{} // capacity 1: a wake while busy is kept, more are merged

	// guarded by m.mu
	pending *v1.Pod // the latest desired pod
	deleted bool    // no source wants the pod any more: terminate it
	// announced holds IDs a runtime event said stopped, with when it said so, until the CRI
	// view agrees: containerd publishes a task's exit before its CRI plugin records it.
	announced map[string]time.Time
	// configChanged is set when a ConfigMap or Secret changed since the last sync.
	configChanged bool
	// networkBroken holds sandboxes whose network failed CNI CHECK, with the error, until
	// the worker has replaced them.
	networkBroken map[string]string

	// owned by the worker goroutine
	log       *logrus.Entry
	backoff   *backoff.Backoff
	startTime *metav1.Time
	// waiting says why a container is not running when the runtime cannot say it
	// (image pull failed, create failed, crash-loop backoff). Cleared when it starts.
	waiting map[string]*v1.ContainerStateWaiting
	// sandboxErr is why the pod has no sandbox (the last RunPodSandbox failure, the network
	// not ready), shown until a sandbox is ready; sandboxReason is its one-word reason, ""
	// meaning FailedCreatePodSandBox.
	sandboxErr    string
	sandboxReason string
	// podIPs are kept from the last ready sandbox so a finished pod still reports them.
	podIPs []string
	// kills says why the agent killed container instances, keyed by container ID.
	kills map[string]kill
	// messages caches the termination message of exited instances by container ID: it is
	// read once (a file, maybe a log tail) instead of on every status built after the exit.
	messages map[string]string
	// volumePaths are the host paths of the pod's volumes from the last SetUp that worked
	// (nil before one did); volumeErr is why the last SetUp failed ("" when it worked).
	volumePaths map[string]string
	volumeErr   string
	synced      bool // the pod has been synced once (for Manager.Synced)

	// tl is the pod's timeline for /debug/pods/<uid>; it has its own lock.
	tl timeline
	// volRun is the latest volume SetUp; volRecorded says the timeline holds one, which is
	// updated only when something changes (see recordVolumes).
	volRun      struct{ start, end time.Time }
	volRecorded bool
	// crashRetryAt is when each crash-looping container may restart next (its wait counts
	// from its exit, which the backoff entry does not know).
	crashRetryAt map[string]time.Time
	// hadSandbox is set once the worker has seen or made a ready sandbox; startPending is
	// set when the worker made the pod's first sandbox itself, until the pod runs: only then
	// is the start duration the agent's doing (an adopted pod was started by an earlier run).
	hadSandbox   bool
	startPending bool
	// deadlineExceeded is set once the pod passed its activeDeadlineSeconds: it is then
	// Failed with reason DeadlineExceeded and nothing starts again.
	deadlineExceeded bool
	// admitted is set once the pod passed admission; rejection (with rejectionReason) is
	// why it did not, and then nothing of it ever starts.
	admitted                   bool
	rejection, rejectionReason string
	// running is the pod's share of the running gauges as last counted.
	running runningCounts
}

// kill is why the agent killed a container instance.
type kill struct {
	// note is shown as the instance's termination message when the runtime has none.
	note string
	// reason is one of the RestartReason values, for nodeagent_container_restarts_total.
	reason string
}

func newWorker(m *Manager, uid types.UID) *worker {
	return &worker{
		m:             m,
		uid:           uid,
		wake:          make(chan struct{}, 1),
		announced:     map[string]time.Time{},
		networkBroken: map[string]string{},
		log:           m.log.WithField("uid", uid),
		backoff:       backoff.New(m.cfg.Backoff, m.cfg.Clock),
		waiting:       map[string]*v1.ContainerStateWaiting{},
		kills:         map[string]kill{},
		messages:      map[string]string{},
		crashRetryAt:  map[string]time.Time{},
	}
}

// poke wakes the worker without blocking.
func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run only waits and dispatches; syncOnce does the work.
func (w *worker) run(ctx context.Context) {
	timer := w.m.cfg.Clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C():
		}
		// A pass runs to its end even when the agent shuts down: a CRI call cancelled halfway
		// (RunPodSandbox, StartContainer) makes containerd race its own cleanup of the task and
		// leak a shim. Run waits a few seconds for the passes in flight.
		next, done := w.syncOnce(context.WithoutCancel(ctx))
		if done {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(next)
	}
}

// syncOnce runs one level-triggered pass and returns when to look again, or done when the
// pod is gone for good.
func (w *worker) syncOnce(ctx context.Context) (next time.Duration, done bool) {
	w.m.mu.Lock()
	pod, deleted := w.pending, w.deleted
	w.m.mu.Unlock()
	w.log = w.m.log.WithFields(logrus.Fields{"pod": pod.Namespace + "/" + pod.Name, "uid": w.uid})
	start := w.m.cfg.Clock.Now()
	op := workerOpSync
	switch {
	case deleted:
		op = workerOpKill
	case !w.synced:
		op = workerOpCreate
	}
	defer func() {
		w.finishSync(pod.Name, pod.Namespace, op, start)
		w.m.cfg.Metrics.observeWorker(op, w.m.cfg.Clock.Since(start))
	}()

	if deleted {
		if err := w.terminate(ctx, pod); err != nil {
			if ctx.Err() != nil {
				return 0, true
			}
			wait := w.backoff.Failed("terminate")
			w.log.WithError(err).WithField("retryIn", wait).Warn("pod termination failed; retrying")
			return wait, false
		}
		w.backoff.Forget("terminate")
		w.countRunning(runningCounts{}) // nothing of the pod is left
		if w.m.workerDone(w) {
			w.log.Info("pod terminated and removed")
			return 0, true
		}
		return 0, false // wanted again while terminating: start it afresh
	}

	next = w.sync(ctx, pod)
	if !w.synced {
		w.synced = true
		w.m.markSynced(w.uid)
	}
	w.backoff.GC()
	return next, false
}

// gracePeriod is how long the pod's containers get to stop, preStop included, in seconds
// within [0, maxSeconds]: the API server accepts any int64, and every use (a duration, CRI's
// stop timeout, the sandbox annotation) must stay sane.
func gracePeriod(pod *v1.Pod) int64 {
	g := int64(v1.DefaultTerminationGracePeriodSeconds)
	if pod.DeletionGracePeriodSeconds != nil {
		g = *pod.DeletionGracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	return min(max(g, 0), maxSeconds)
}

// orphanPod rebuilds enough of a pod from its sandbox's labels to terminate it.
func orphanPod(labels, annotations map[string]string) *v1.Pod {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name:      labels[cri.LabelPodName],
		Namespace: labels[cri.LabelPodNamespace],
		UID:       types.UID(labels[cri.LabelPodUID]),
	}}
	if g, err := strconv.ParseInt(annotations[cri.AnnotationPodTerminationGracePeriod], 10, 64); err == nil {
		pod.Spec.TerminationGracePeriodSeconds = &g
	}
	return pod
}
