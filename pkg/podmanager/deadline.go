package podmanager

import (
	"context"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet's reason and message for a pod past its activeDeadlineSeconds.
const (
	reasonDeadlineExceeded  = "DeadlineExceeded"
	messageDeadlineExceeded = "Pod was active on the node longer than the specified deadline"
)

// activeDeadlinePassed reports whether the pod has been active longer than its
// activeDeadlineSeconds (counted from its start time: the one the API server has from an
// earlier run of the agent if earlier than this worker's), and otherwise asks for a pass at
// the deadline. Once passed it stays passed: a deadline that is raised again cannot bring
// the pod back, as with the kubelet. A lowered deadline is seen on the pass the update wakes.
func (w *worker) activeDeadlinePassed(pod *v1.Pod, again requeue) bool {
	if w.deadlineExceeded {
		return true
	}
	if pod.Spec.ActiveDeadlineSeconds == nil || w.startTime == nil {
		return false
	}
	start := w.startTime.Time
	if s := pod.Status.StartTime; s != nil && s.Time.Before(start) {
		start = s.Time
	}
	left := start.Add(seconds(*pod.Spec.ActiveDeadlineSeconds)).Sub(w.m.cfg.Clock.Now())
	if left > 0 {
		again(left)
		return false
	}
	w.deadlineExceeded = true
	w.log.WithField("activeDeadlineSeconds", *pod.Spec.ActiveDeadlineSeconds).Info("pod passed its active deadline; killing it")
	w.event(pod, v1.EventTypeNormal, reasonDeadlineExceeded, messageDeadlineExceeded)
	return true
}

// killForDeadline stops every running container of the pod within one grace period (one
// deadline for all, preStop included, as terminate does), as the kubelet kills a pod past its
// deadline; the finished-pod path then gives back the sandbox.
func (w *worker) killForDeadline(ctx context.Context, pod *v1.Pod, st *podState) {
	grace := gracePeriod(pod)
	deadline := w.m.cfg.Clock.Now().Add(seconds(grace))
	all := append(append([]v1.Container{}, pod.Spec.Containers...), pod.Spec.InitContainers...)
	for i := range all {
		c := &all[i]
		l := st.latest(c.Name)
		if l == nil || l.state() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		w.kills[l.c.Id] = kill{note: messageDeadlineExceeded}
		w.event(pod, v1.EventTypeNormal, eventKilling, "Stopping container "+c.Name)
		if err := w.stopContainerBy(ctx, c, l.c.Id, deadline, grace > 0); err != nil && !errdefs.IsNotFound(err) {
			w.log.WithError(err).WithField("container", c.Name).Warn("stopping a container past the pod's deadline failed")
		}
	}
}
