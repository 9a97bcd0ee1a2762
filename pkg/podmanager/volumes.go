package podmanager

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Volumes prepares and removes pods' volumes; volume.Manager implements it.
type Volumes interface {
	// SetUp is idempotent and cheap when nothing changed; it refreshes configMap, secret
	// and downwardAPI contents, so calling it on every sync is how updates reach pods.
	SetUp(ctx context.Context, pod *v1.Pod) (map[string]string, error)
	// Mounts builds c's CRI mounts from the paths SetUp returned. It stages subPath mounts
	// (bind mounts the runtime cannot be tricked into redirecting), so it is called right
	// before each CreateContainer; TearDown releases them.
	Mounts(pod *v1.Pod, c *v1.Container, paths map[string]string) ([]*runtimeapi.Mount, error)
	// TerminationMessageFile makes a fresh file for one container instance to write its
	// termination message into; ReadTerminationMessage reads one back, bounded.
	TerminationMessageFile(uid types.UID, container string) (string, error)
	ReadTerminationMessage(path string) (string, error)
	TearDown(uid types.UID) error
	PodsOnDisk() ([]types.UID, error)
}

// noConfigs answers NotFound for everything: a node with no source of ConfigMaps and Secrets.
type noConfigs struct{}

func (noConfigs) GetConfigMap(_, name string) (*v1.ConfigMap, error) {
	return nil, fmt.Errorf("configmap %q not found: %w", name, errdefs.ErrNotFound)
}

func (noConfigs) GetSecret(_, name string) (*v1.Secret, error) {
	return nil, fmt.Errorf("secret %q not found: %w", name, errdefs.ErrNotFound)
}

// ConfigChanged wakes every worker: a ConfigMap or Secret changed, so volumes may need new
// contents and pods waiting for a missing object may start.
func (m *Manager) ConfigChanged() {
	m.mu.Lock()
	for _, w := range m.workers {
		w.configChanged = true
		w.poke()
	}
	m.mu.Unlock()
}

// retryConfigWaits drops the backoff of whatever waits for configuration (volumes, a
// container whose env or mounts could not be built), after a ConfigMap or Secret changed:
// the change may be what it was waiting for, so it retries at once.
func (w *worker) retryConfigWaits() {
	w.m.mu.Lock()
	changed := w.configChanged
	w.configChanged = false
	w.m.mu.Unlock()
	if !changed {
		return
	}
	w.backoff.Forget("volumes")
	for name, wt := range w.waiting {
		if wt.Reason == reasonCreateConfigError {
			w.backoff.Forget(containerBackoffKey(name))
		}
	}
}

// setUpVolumes prepares the pod's volumes before anything runs, and refreshes their content
// on every later pass. A failure before the first SetUp worked keeps the pod where it is, with
// the reason in its status; a later one (a ConfigMap that cannot be read while the API server
// is away) leaves the volumes as they were and the pod carries on, restarts included, as with
// the kubelet. Either is retried after a backoff or as soon as a ConfigMap or Secret changes.
func (w *worker) setUpVolumes(ctx context.Context, pod *v1.Pod, again requeue) bool {
	if w.m.cfg.Volumes == nil || len(pod.Spec.Volumes) == 0 {
		w.volumePaths, w.volumeErr = nil, ""
		return true
	}
	start := w.stepStart()
	paths, err := w.m.cfg.Volumes.SetUp(ctx, pod)
	w.recordVolumes(start, err)
	if err != nil {
		msg := "MountVolume.SetUp failed: " + err.Error()
		if msg != w.volumeErr {
			w.log.WithError(err).Warn("setting up the pod's volumes failed")
			w.event(pod, v1.EventTypeWarning, eventFailedMount, msg)
		}
		w.volumeErr = msg
		again(w.backoff.Failed("volumes"))
		return w.volumePaths != nil
	}
	w.backoff.Forget("volumes")
	w.volumePaths, w.volumeErr = paths, ""
	return true
}

// volumesBlocked is why the pod cannot start for its volumes: the last SetUp failed and none
// has worked yet. "" when nothing blocks.
func (w *worker) volumesBlocked() string {
	if w.volumePaths != nil {
		return ""
	}
	return w.volumeErr
}

// recordVolumes keeps the latest SetUp's timing. SetUp runs on every sync, so the timeline
// takes it only when it says something: the first run, a failure, the first success after
// one. ensureSandbox records it too when it starts a sandbox after it. It runs before
// setUpVolumes updates volumeErr, which still says whether the previous SetUp failed.
func (w *worker) recordVolumes(start time.Time, err error) {
	end := w.m.cfg.Clock.Now()
	w.volRun.start, w.volRun.end = start, end
	if err != nil || !w.volRecorded || w.volumeErr != "" {
		w.tl.record(StepVolumes, "", "", start, end, err)
		w.volRecorded = true
	}
}

// removeOrphanVolumes tears down the volume directories of pods the agent no longer knows:
// left behind by a crash between removing a pod's sandbox and its volumes, or by pods removed
// while the agent was down. Only once every source has reported, so a pod not loaded yet is
// not mistaken for a gone one; a pod with a worker tears its own volumes down.
func (m *Manager) removeOrphanVolumes() {
	if m.cfg.Volumes == nil {
		return
	}
	uids, err := m.cfg.Volumes.PodsOnDisk()
	if err != nil {
		m.log.WithError(err).Warn("listing pod volume directories failed")
		return
	}
	m.mu.Lock()
	ready := m.sourcesReadyLocked()
	var orphans []types.UID
	for _, uid := range uids {
		if _, ok := m.workers[uid]; !ok {
			orphans = append(orphans, uid)
		}
	}
	m.mu.Unlock()
	if !ready {
		return
	}
	for _, uid := range orphans {
		if err := m.cfg.Volumes.TearDown(uid); err != nil {
			m.log.WithError(err).WithField("uid", uid).Warn("removing the volumes of a gone pod failed")
			continue
		}
		m.log.WithField("uid", uid).Info("removed the volumes of a pod that is gone")
	}
}
