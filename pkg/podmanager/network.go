package podmanager

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// NetworkCheckFailed records that the pod's sandbox failed a CNI CHECK and wakes its worker,
// which replaces the sandbox. It only takes the manager's short lock, never waits on a worker
// (the network service calls it from its own loop; DESIGN.md decision 5).
func (m *Manager) NetworkCheckFailed(uid types.UID, sandboxID string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.workers[uid]; w != nil {
		w.networkBroken[sandboxID] = err.Error()
		w.poke()
	}
}

// takeNetworkBroken returns the CHECK failure recorded for the sandbox, if any, and forgets
// every recorded failure: those of other sandboxes are stale.
func (w *worker) takeNetworkBroken(sandboxID string) string {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	msg := w.networkBroken[sandboxID]
	clear(w.networkBroken)
	return msg
}

// replaceBrokenSandbox stops the containers of a sandbox whose network failed CHECK (with the
// pod's grace, preStop included) and then the sandbox, as the kubelet does when a pod's
// sandbox changed. The next pass creates a new sandbox, with a new network, and the restart
// policy decides which containers run again. Each killed container's termination message says
// why. Re-running ADD on the old sandbox is not an option: its address may change, and CRI
// would keep reporting the old one.
func (w *worker) replaceBrokenSandbox(ctx context.Context, pod *v1.Pod, st *podState, sb *runtimeapi.PodSandbox, checkErr string) {
	note := fmt.Sprintf("pod network failed CNI CHECK, the pod sandbox is re-created: %s", checkErr)
	w.log.WithFields(logrus.Fields{"sandbox": sb.Id, "error": checkErr}).
		Warn("pod network failed CNI CHECK; stopping the pod and re-creating its sandbox")
	w.event(pod, v1.EventTypeNormal, eventSandboxChanged, "Pod sandbox changed, it will be killed and re-created.")
	grace := gracePeriod(pod)
	var wg sync.WaitGroup
	for _, c := range st.containers {
		if c.c.PodSandboxId != sb.Id || c.state() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		w.kills[c.c.Id] = kill{note: note, reason: RestartReasonSandboxChanged}
		spec := specContainer(pod, c.name())
		if spec == nil {
			continue // stopped with the sandbox
		}
		wg.Add(1)
		go func(id, name string) {
			defer wg.Done()
			if err := w.stopContainer(ctx, pod, spec, id, grace); err != nil && !errdefs.IsNotFound(err) {
				w.log.WithError(err).WithField("container", name).Warn("stopping a container of a broken sandbox failed")
			}
		}(c.c.Id, c.name())
	}
	wg.Wait()
	if err := w.m.rt.StopPodSandbox(ctx, sb.Id); err != nil && !errdefs.IsNotFound(err) {
		w.log.WithError(err).WithField("sandbox", sb.Id).Warn("stopping a broken sandbox failed")
	}
	w.sandboxErr, w.sandboxReason = note, reasonNetworkCheckFailed
}
