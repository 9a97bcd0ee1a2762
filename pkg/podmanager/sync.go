package podmanager

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// requeue lowers *next to d: the worker looks again after the soonest thing it waits for.
type requeue func(d time.Duration)

// sync makes the runtime match pod and records the resulting status. It is level-triggered:
// every pass starts from what the runtime holds, so running it twice changes nothing the
// second time. It returns when the worker should look again.
func (w *worker) sync(ctx context.Context, pod *v1.Pod) time.Duration {
	if w.startTime == nil {
		now := metav1.NewTime(w.m.cfg.Clock.Now())
		w.startTime = &now
	}
	st, err := w.observe(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.WithError(err).Warn("reading the pod's state from the runtime failed")
		}
		return runtimeRetry
	}
	w.retryConfigWaits()
	next := w.m.cfg.ResyncPeriod
	lower := func(d time.Duration) {
		if d < next {
			next = d
		}
	}
	if w.reconcile(ctx, pod, st, lower) {
		if fresh, err := w.observe(ctx); err == nil {
			st = fresh
		}
	}
	w.countRunning(countsOf(st))
	w.awaitAnnouncedExits(st, lower)
	w.syncProbes(pod, st)
	status := keepFinalStatus(pod, w.buildStatus(pod, st))
	if w.startPending && status.Phase == v1.PodRunning {
		w.startPending = false
		w.m.cfg.Metrics.observePodStart(w.m.cfg.Clock.Since(w.startTime.Time))
	}
	if w.m.status.Set(pod, status) && w.m.cfg.StatusChanged != nil {
		w.m.cfg.StatusChanged()
	}
	return next
}

// countRunning moves the running gauges by the pod's change since the last sync.
func (w *worker) countRunning(now runningCounts) {
	w.m.cfg.Metrics.moveRunning(w.running, now)
	w.running = now
}

// An exit announced by containerd's own events reaches the agent before containerd's CRI
// has recorded it (CRI first deletes the task). The worker looks again quickly while CRI
// usually catches up, then more slowly, since a loaded containerd can take seconds; past
// announcedExitWait the relist is the safety net.
const (
	announcedExitRetry     = 10 * time.Millisecond
	announcedExitFast      = 2 * time.Second
	announcedExitSlowRetry = 250 * time.Millisecond
	announcedExitWait      = 30 * time.Second
)

// awaitAnnouncedExits asks for a resync while an exit the event stream announced is not
// visible through CRI yet, so a restart does not wait for the next relist.
func (w *worker) awaitAnnouncedExits(st *podState, again requeue) {
	now := w.m.cfg.Clock.Now()
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	for id, at := range w.announced {
		age := now.Sub(at)
		switch {
		case !st.stillRunning(id) || age >= announcedExitWait:
			delete(w.announced, id)
		case age < announcedExitFast:
			again(announcedExitRetry)
		default:
			again(announcedExitSlowRetry)
		}
	}
}

// reconcile takes the actions that move the runtime toward pod and reports whether it changed
// anything.
func (w *worker) reconcile(ctx context.Context, pod *v1.Pod, st *podState, again requeue) bool {
	if w.admit(pod, st) != "" {
		return false
	}
	deadline := !finalPhase(pod.Status.Phase) && w.activeDeadlinePassed(pod, again)
	if deadline {
		w.killForDeadline(ctx, pod, st)
	}
	if deadline || podFinished(pod, st) {
		// A finished pod keeps its containers (for status and logs) but gives back its
		// sandbox: the IP address and the pause process.
		if sb := st.readySandbox(); sb != nil {
			if st.sandboxStatus != nil {
				w.podIPs = sandboxIPs(st.sandboxStatus)
			}
			w.log.Info("pod finished; stopping its sandbox")
			if err := w.m.rt.StopPodSandbox(ctx, sb.Id); err != nil {
				w.log.WithError(err).Warn("stopping the sandbox of a finished pod failed")
				again(runtimeRetry)
			}
			return true
		}
		return false
	}

	if sb := st.readySandbox(); sb != nil {
		if msg := w.takeNetworkBroken(sb.Id); msg != "" {
			w.replaceBrokenSandbox(ctx, pod, st, sb, msg)
			again(0)
			return true
		}
	}
	if w.killUnhealthy(ctx, pod, st) {
		again(0) // the killed containers restart on the next pass, per the restart policy
		return true
	}
	if !w.setUpVolumes(ctx, pod, again) {
		return false
	}
	sb, sbCfg, acted := w.ensureSandbox(ctx, pod, st, again)
	if sb == nil {
		return acted
	}
	initDone, initActed := w.syncInitContainers(ctx, pod, sb, sbCfg, st, again)
	acted = acted || initActed
	if !initDone {
		return acted
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		latest := st.latest(c.Name)
		if latest != nil {
			switch latest.state() {
			case runtimeapi.ContainerState_CONTAINER_RUNNING:
				continue
			case runtimeapi.ContainerState_CONTAINER_UNKNOWN:
				w.killUnknown(ctx, pod, c, latest) // then a new instance, whatever the policy
			case runtimeapi.ContainerState_CONTAINER_CREATED:
				if latest.c.PodSandboxId == sb.Id {
					// Created but never started: the agent died between the two calls.
					w.startCreated(ctx, pod, c, latest, again)
					acted = true
					continue
				}
			case runtimeapi.ContainerState_CONTAINER_EXITED:
				if !shouldRestart(pod.Spec.RestartPolicy, latest.exitCode()) {
					continue
				}
			}
		}
		if w.startOrBackoff(ctx, pod, c, sb, sbCfg, st, latest, again) {
			acted = true
		}
	}
	return acted
}

// syncInitContainers runs init containers one at a time, in order, in the current sandbox
// (a new sandbox runs them again, as a restarted pod does). A regular init container must
// exit 0 before the next starts; a sidecar (restartPolicy Always on an init container) must
// be running, and is restarted whenever it exits, without holding up the containers after
// it. It reports whether initialization is complete.
func (w *worker) syncInitContainers(ctx context.Context, pod *v1.Pod, sb *runtimeapi.PodSandbox, sbCfg *runtimeapi.PodSandboxConfig, st *podState, again requeue) (done, acted bool) {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		latest := st.latest(c.Name)
		inSandbox := latest != nil && latest.c.PodSandboxId == sb.Id
		if inSandbox && latest.state() == runtimeapi.ContainerState_CONTAINER_CREATED {
			w.startCreated(ctx, pod, c, latest, again)
			return false, true
		}
		if inSandbox && isUnknown(latest) {
			w.killUnknown(ctx, pod, c, latest) // then a new instance, below
		}
		if isSidecar(c) {
			switch {
			case inSandbox && latest.state() == runtimeapi.ContainerState_CONTAINER_RUNNING:
				continue
			case inSandbox && latest.hasStarted():
				if w.startOrBackoff(ctx, pod, c, sb, sbCfg, st, latest, again) {
					acted = true
				}
				continue
			default:
				// Look again at once: the sidecar is running as soon as the start returns,
				// and the containers after it need not wait for an event.
				if w.startOrBackoff(ctx, pod, c, sb, sbCfg, st, latest, again) {
					again(0)
					acted = true
				}
				return false, acted
			}
		}
		if inSandbox {
			switch latest.state() {
			case runtimeapi.ContainerState_CONTAINER_EXITED:
				if latest.exitCode() == 0 {
					continue
				}
			case runtimeapi.ContainerState_CONTAINER_RUNNING:
				return false, acted // wait for it to exit
			}
		}
		// Not run in this sandbox yet, or failed: restartPolicy Never pods are finished
		// before this point, so a failed one is retried here.
		return false, w.startOrBackoff(ctx, pod, c, sb, sbCfg, st, latest, again) || acted
	}
	return true, acted
}

// isSidecar reports whether c is a restartable init container.
func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// shouldRestart applies the pod's restartPolicy to a container that exited with code.
func shouldRestart(policy v1.RestartPolicy, code int32) bool {
	switch policy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return code != 0
	default:
		return true
	}
}

// podFinished reports whether no app container of the pod will ever run again: a regular init
// container failed under restartPolicy Never, or every app container exited and may not
// restart. Sidecars do not count: they are stopped with the pod.
func podFinished(pod *v1.Pod, st *podState) bool {
	if finalPhase(pod.Status.Phase) {
		return true // the API already says so: nothing is ever started again
	}
	if pod.Spec.RestartPolicy == v1.RestartPolicyAlways || pod.Spec.RestartPolicy == "" {
		return false
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if isSidecar(c) {
			continue // sidecars never finish a pod; they are stopped with it
		}
		l := st.latest(c.Name)
		if l != nil && l.state() == runtimeapi.ContainerState_CONTAINER_EXITED && l.exitCode() != 0 &&
			pod.Spec.RestartPolicy == v1.RestartPolicyNever {
			return true
		}
	}
	for _, c := range pod.Spec.Containers {
		l := st.latest(c.Name)
		if l == nil || l.state() != runtimeapi.ContainerState_CONTAINER_EXITED ||
			shouldRestart(pod.Spec.RestartPolicy, l.exitCode()) {
			return false
		}
	}
	return true
}
