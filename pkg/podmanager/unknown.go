package podmanager

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// killUnknown stops an instance the runtime reports in state UNKNOWN, which the caller then
// replaces with a new one, as the kubelet does: whether such an instance runs cannot be
// known, so it is killed first to never have two. containerd reports it, for good, for a
// container whose create a containerd restart cut short; waiting for it to exit would wait
// forever. A failed stop is logged and the new instance started anyway (the kubelet does the
// same); one that is really gone answers NotFound.
func (w *worker) killUnknown(ctx context.Context, pod *v1.Pod, c *v1.Container, ci *containerInfo) {
	note := fmt.Sprintf("Container is in %q state, try killing it before restart", "unknown")
	w.kills[ci.c.Id] = kill{note: note}
	log := w.log.WithField("container", c.Name).WithField("containerID", ci.c.Id)
	log.Warn("container in an unknown state; killing it before starting a new one")
	w.event(pod, v1.EventTypeNormal, eventKilling, note)
	if err := w.m.rt.StopContainer(ctx, ci.c.Id, 0); err != nil && !errdefs.IsNotFound(err) {
		log.WithError(err).Warn("stopping a container in an unknown state failed")
	}
}

// isUnknown reports whether ci is an instance in state UNKNOWN.
func isUnknown(ci *containerInfo) bool {
	return ci != nil && ci.state() == runtimeapi.ContainerState_CONTAINER_UNKNOWN
}
