package logs

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type fakeLister struct {
	filter     *runtimeapi.ContainerFilter
	containers []*runtimeapi.Container
	status     map[string]*runtimeapi.ContainerStatus // missing: NotFound
}

func (f *fakeLister) ListContainers(_ context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	f.filter = filter
	return f.containers, nil
}

func (f *fakeLister) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	st, ok := f.status[id]
	if !ok {
		return nil, fmt.Errorf("cri ContainerStatus %s: %w", id, errdefs.ErrNotFound)
	}
	return &runtimeapi.ContainerStatusResponse{Status: st}, nil
}

func TestRuntimeContainersAreTheRunningOnesOfTheSelector(t *testing.T) {
	running := runtimeapi.ContainerState_CONTAINER_RUNNING
	f := &fakeLister{
		containers: []*runtimeapi.Container{{Id: "a"}, {Id: "gone"}, {Id: "exited-since"}},
		status: map[string]*runtimeapi.ContainerStatus{
			"a":            {Id: "a", State: running, LogPath: "/logs/ns_p_u/app/0.log"},
			"exited-since": {Id: "exited-since", State: runtimeapi.ContainerState_CONTAINER_EXITED, LogPath: "/logs/x.log"},
		},
	}
	sel := map[string]string{"nodeagent.io/node": "n1"}
	got, err := RuntimeContainers(f, sel)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (Container{ID: "a", LogPath: "/logs/ns_p_u/app/0.log"}) {
		t.Fatalf("containers = %+v", got)
	}
	if f.filter.GetState().GetState() != running || f.filter.LabelSelector["nodeagent.io/node"] != "n1" {
		t.Fatalf("filter = %+v: want running containers of the selector", f.filter)
	}
}
