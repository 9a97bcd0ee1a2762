package podmanager

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
)

// Prober runs the health probes; prober.Manager implements it. Its results reach the worker
// as wake-ups (Manager.ProbeChanged); the worker reads them with Result and alone decides
// what to do with the runtime.
type Prober interface {
	SyncPod(uid types.UID, targets []prober.Target)
	RemovePod(uid types.UID)
	Result(containerID string, kind prober.Kind) (prober.Result, string)
}

// ProbeChanged wakes the worker of a pod whose probe result changed.
func (m *Manager) ProbeChanged(uid types.UID) {
	m.mu.Lock()
	if w := m.workers[uid]; w != nil {
		w.poke()
	}
	m.mu.Unlock()
}

// ProbeFailed raises the kubelet's Unhealthy event for one failed probe run ("Readiness probe
// failed: HTTP probe failed with statuscode: 503"). Like the kubelet, every failed run raises
// one, before the failure threshold is reached too; the event recorder folds the repeats
// into one event with a count. It is called from probe goroutines and takes only the
// manager's lock, briefly.
func (m *Manager) ProbeFailed(u prober.Update) {
	m.mu.Lock()
	w := m.workers[u.PodUID]
	var pod *v1.Pod
	if w != nil && !w.deleted {
		pod = w.pending
	}
	m.mu.Unlock()
	if pod == nil {
		return
	}
	w.event(pod, v1.EventTypeWarning, eventUnhealthy, fmt.Sprintf("%s probe failed: %s", u.Kind.Title(), u.Message))
}

// probesOf lists the probes a container declares.
func probesOf(c *v1.Container) map[prober.Kind]*v1.Probe {
	out := map[prober.Kind]*v1.Probe{}
	for kind, p := range map[prober.Kind]*v1.Probe{prober.Startup: c.StartupProbe, prober.Liveness: c.LivenessProbe, prober.Readiness: c.ReadinessProbe} {
		if p != nil {
			out[kind] = p
		}
	}
	return out
}

// probedContainers are the containers that may have probes: app containers and sidecars.
func probedContainers(pod *v1.Pod) []*v1.Container {
	var out []*v1.Container
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			out = append(out, &pod.Spec.InitContainers[i])
		}
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// syncProbes hands the prober one target per probe of every running container of the ready
// sandbox. Probes of stopped containers go away with their targets.
func (w *worker) syncProbes(pod *v1.Pod, st *podState) {
	if w.m.cfg.Prober == nil {
		return
	}
	var targets []prober.Target
	sb := st.readySandbox()
	for _, c := range probedContainers(pod) {
		l := st.latest(c.Name)
		if sb == nil || l == nil || l.state() != runtimeapi.ContainerState_CONTAINER_RUNNING || l.c.PodSandboxId != sb.Id || l.status == nil {
			continue
		}
		for kind, p := range probesOf(c) {
			targets = append(targets, prober.Target{
				PodUID:        pod.UID,
				PodRef:        pod.Namespace + "/" + pod.Name,
				ContainerName: c.Name,
				ContainerID:   l.c.Id,
				PodIP:         firstIP(w.podIPs),
				Ports:         c.Ports,
				Kind:          kind,
				Probe:         p,
				StartedAt:     time.Unix(0, l.status.StartedAt),
			})
		}
	}
	w.m.cfg.Prober.SyncPod(pod.UID, targets)
}

func firstIP(ips []string) string {
	if len(ips) > 0 {
		return ips[0]
	}
	return ""
}

// killUnhealthy stops running containers whose liveness or startup probe failed; the
// restart policy then decides, as for any exit. It reports whether it killed any.
func (w *worker) killUnhealthy(ctx context.Context, pod *v1.Pod, st *podState) bool {
	if w.m.cfg.Prober == nil {
		return false
	}
	killed := false
	for _, c := range probedContainers(pod) {
		l := st.latest(c.Name)
		if l == nil || l.state() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		for _, kind := range []prober.Kind{prober.Startup, prober.Liveness} {
			p := probesOf(c)[kind]
			if p == nil {
				continue
			}
			res, msg := w.m.cfg.Prober.Result(l.c.Id, kind)
			if res != prober.Failure {
				continue
			}
			grace := gracePeriod(pod)
			if p.TerminationGracePeriodSeconds != nil {
				grace = *p.TerminationGracePeriodSeconds
			}
			// The Unhealthy event came with the failed run (ProbeFailed); this is the kill.
			w.log.WithFields(logrus.Fields{"container": c.Name, "containerID": l.c.Id, "gracePeriod": grace}).
				Warnf("%s probe failed: %s; killing the container, it will be restarted per the pod's restart policy", kind.Title(), msg)
			k := kill{note: fmt.Sprintf("Container %s failed %s probe, will be restarted", c.Name, kind), reason: RestartReasonProbeFailed}
			w.kills[l.c.Id] = k
			w.event(pod, v1.EventTypeNormal, eventKilling, k.note)
			if err := w.stopContainer(ctx, pod, c, l.c.Id, grace); err != nil && !errdefs.IsNotFound(err) {
				w.log.WithError(err).WithField("container", c.Name).Warn("killing an unhealthy container failed")
			}
			killed = true
			break
		}
	}
	return killed
}

// probeStatus reports a running container's started and ready, as the kubelet does: started
// once its startup probe (if any) succeeded; ready once started and its readiness probe (if
// any) succeeded.
func (w *worker) probeStatus(c *v1.Container, containerID string) (started, ready bool) {
	started, ready = true, true
	if w.m.cfg.Prober == nil {
		return started, ready
	}
	if c.StartupProbe != nil {
		res, _ := w.m.cfg.Prober.Result(containerID, prober.Startup)
		started = res == prober.Success
	}
	if c.ReadinessProbe != nil {
		res, _ := w.m.cfg.Prober.Result(containerID, prober.Readiness)
		ready = res == prober.Success
	}
	return started, started && ready
}
