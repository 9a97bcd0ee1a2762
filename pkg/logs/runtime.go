package logs

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerLister is the part of the CRI client RuntimeContainers needs (*cri.Client).
type ContainerLister interface {
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error)
}

// RuntimeContainers returns a Config.List that asks the runtime for its running containers
// carrying every label of selector (the agent's node label, so agents sharing a runtime leave
// each other's logs alone) and for each one's log path, as the kubelet does.
func RuntimeContainers(rt ContainerLister, selector map[string]string) func(ctx context.Context) ([]Container, error) {
	return func(ctx context.Context) ([]Container, error) {
		cs, err := rt.ListContainers(ctx, &runtimeapi.ContainerFilter{
			State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			LabelSelector: selector,
		})
		if err != nil {
			return nil, err
		}
		out := make([]Container, 0, len(cs))
		var errs []error
		for _, c := range cs {
			st, err := rt.ContainerStatus(ctx, c.Id, false)
			if errdefs.IsNotFound(err) {
				continue // gone since the list
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("log path of container %s: %w", c.Id, err))
				continue
			}
			if st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
				continue
			}
			out = append(out, Container{ID: c.Id, LogPath: st.GetStatus().GetLogPath()})
		}
		// A container whose status failed is skipped this pass; the others still rotate.
		if len(out) == 0 && len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return out, nil
	}
}
