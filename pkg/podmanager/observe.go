package podmanager

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// podState is what the runtime holds for one pod, read fresh on every sync.
type podState struct {
	sandboxes  []*runtimeapi.PodSandbox // newest first
	containers []*containerInfo         // newest first
	// sandboxStatus belongs to the ready sandbox, if there is one.
	sandboxStatus *runtimeapi.PodSandboxStatus
}

// containerInfo pairs a listed container with its detailed status; status is fetched only for
// the two newest instances of each name (current state and lastState), else nil.
type containerInfo struct {
	c      *runtimeapi.Container
	status *runtimeapi.ContainerStatus
}

func (ci *containerInfo) name() string { return ci.c.GetMetadata().GetName() }

func (ci *containerInfo) attempt() uint32 { return ci.c.GetMetadata().GetAttempt() }

func (ci *containerInfo) state() runtimeapi.ContainerState { return ci.c.State }

// restartCount is the count the instance was created with, from the kubelet's annotation, so
// it survives agent restarts; instances without it fall back to the CRI attempt.
func (ci *containerInfo) restartCount() int32 {
	if v, ok := ci.c.Annotations[cri.AnnotationRestartCount]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 0 {
			return int32(n)
		}
	}
	return int32(ci.attempt())
}

// hasStarted reports whether the instance ever ran.
func (ci *containerInfo) hasStarted() bool {
	return ci != nil && ci.status != nil && ci.status.StartedAt != 0
}

// finishedAt is when an exited instance exited; zero otherwise (and for a nil instance).
func (ci *containerInfo) finishedAt() time.Time {
	if ci == nil || ci.status == nil || ci.state() != runtimeapi.ContainerState_CONTAINER_EXITED || ci.status.FinishedAt == 0 {
		return time.Time{}
	}
	return time.Unix(0, ci.status.FinishedAt)
}

// exitCode is only meaningful for an exited container with a status.
func (ci *containerInfo) exitCode() int32 {
	if ci.status == nil {
		return -1
	}
	return ci.status.ExitCode
}

// observe lists the pod's sandboxes and containers.
func (w *worker) observe(ctx context.Context) (*podState, error) {
	sel := map[string]string{cri.LabelPodUID: string(w.uid)}
	sandboxes, err := w.m.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	containers, err := w.m.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	sort.Slice(sandboxes, func(i, j int) bool {
		a, b := sandboxes[i], sandboxes[j]
		if a.GetMetadata().GetAttempt() != b.GetMetadata().GetAttempt() {
			return a.GetMetadata().GetAttempt() > b.GetMetadata().GetAttempt()
		}
		return a.CreatedAt > b.CreatedAt
	})
	sort.Slice(containers, func(i, j int) bool {
		a, b := containers[i], containers[j]
		if a.GetMetadata().GetAttempt() != b.GetMetadata().GetAttempt() {
			return a.GetMetadata().GetAttempt() > b.GetMetadata().GetAttempt()
		}
		return a.CreatedAt > b.CreatedAt
	})

	st := &podState{sandboxes: sandboxes}
	seen := map[string]int{}
	for _, c := range containers {
		ci := &containerInfo{c: c}
		name := ci.name()
		if seen[name] < 2 {
			resp, err := w.m.rt.ContainerStatus(ctx, c.Id, false)
			switch {
			case errdefs.IsNotFound(err):
				continue // removed between list and status
			case err != nil:
				return nil, fmt.Errorf("status of container %s: %w", c.Id, err)
			}
			ci.status = resp.GetStatus()
		}
		seen[name]++
		st.containers = append(st.containers, ci)
	}
	if sb := st.readySandbox(); sb != nil {
		resp, err := w.m.rt.PodSandboxStatus(ctx, sb.Id, false)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("status of sandbox %s: %w", sb.Id, err)
		}
		st.sandboxStatus = resp.GetStatus()
	}
	return st, nil
}

// readySandbox is the newest sandbox if it is ready. An older ready sandbox behind a newer one
// is a leftover and is not used.
func (s *podState) readySandbox() *runtimeapi.PodSandbox {
	if len(s.sandboxes) > 0 && s.sandboxes[0].State == runtimeapi.PodSandboxState_SANDBOX_READY {
		return s.sandboxes[0]
	}
	return nil
}

// stillRunning reports whether the container or sandbox with this ID is running in the
// runtime's view.
func (s *podState) stillRunning(id string) bool {
	for _, c := range s.containers {
		if c.c.Id == id {
			return c.state() == runtimeapi.ContainerState_CONTAINER_RUNNING
		}
	}
	for _, sb := range s.sandboxes {
		if sb.Id == id {
			return sb.State == runtimeapi.PodSandboxState_SANDBOX_READY
		}
	}
	return false
}

// latest is the newest instance of the named container, in any sandbox.
func (s *podState) latest(name string) *containerInfo {
	for _, c := range s.containers {
		if c.name() == name {
			return c
		}
	}
	return nil
}

// previous is the instance before latest, whose exit is the container's lastState.
func (s *podState) previous(name string) *containerInfo {
	n := 0
	for _, c := range s.containers {
		if c.name() == name {
			if n == 1 {
				return c
			}
			n++
		}
	}
	return nil
}
