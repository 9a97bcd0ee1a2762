package check

import (
	"context"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// fakeRuntime answers the listings with whatever the test put in it.
type fakeRuntime struct {
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
	statuses   map[string]*runtimeapi.ContainerStatus
}

func (f *fakeRuntime) ListPodSandbox(context.Context, *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	return f.sandboxes, nil
}

func (f *fakeRuntime) ListContainers(context.Context, *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	return f.containers, nil
}

func (f *fakeRuntime) PodSandboxStatus(context.Context, string, bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{}}, nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	return &runtimeapi.ContainerStatusResponse{Status: f.statuses[id]}, nil
}

func sandbox(id, uid string, state runtimeapi.PodSandboxState) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{Id: id, State: state, Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Uid: uid}}
}

func container(id, uid, name string, attempt uint32, state runtimeapi.ContainerState) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id:        id,
		State:     state,
		CreatedAt: int64(attempt),
		Metadata:  &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
		Labels:    map[string]string{cri.LabelPodUID: uid, cri.LabelPodName: "p"},
	}
}

func TestObserverCountsDuplicatesAndRestartsAcrossSamples(t *testing.T) {
	rt := &fakeRuntime{statuses: map[string]*runtimeapi.ContainerStatus{
		"c1": {StartedAt: 1, FinishedAt: 2, ExitCode: 137},
		"c6": {Reason: "StartError", Message: "context canceled", ExitCode: 128},
	}}
	o := NewObserver(&Bed{Node: "n", CRI: rt})
	ready, notReady := runtimeapi.PodSandboxState_SANDBOX_READY, runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	running, exited := runtimeapi.ContainerState_CONTAINER_RUNNING, runtimeapi.ContainerState_CONTAINER_EXITED
	steps := []struct {
		sandboxes  []*runtimeapi.PodSandbox
		containers []*runtimeapi.Container
	}{
		// u1 runs; u2's first sandbox failed and was replaced (one ready: fine).
		{[]*runtimeapi.PodSandbox{sandbox("s1", "u1", ready), sandbox("s2", "u2", notReady), sandbox("s3", "u2", ready)},
			[]*runtimeapi.Container{container("c1", "u1", "main", 0, running), container("c3", "u2", "main", 0, running)}},
		// u1 gets a second ready sandbox for a moment, and its running container, killed, a
		// second instance (listed first); u4's first start was cut short.
		{[]*runtimeapi.PodSandbox{sandbox("s1", "u1", ready), sandbox("s4", "u1", ready)},
			[]*runtimeapi.Container{container("c4", "u1", "main", 1, running), container("c1", "u1", "main", 0, exited),
				container("c6", "u4", "main", 0, exited), container("c7", "u4", "main", 1, running)}},
		// Later c1 is gone, but it was seen; u3's container carries attempt 2 from the start.
		{[]*runtimeapi.PodSandbox{sandbox("s1", "u1", ready)},
			[]*runtimeapi.Container{container("c4", "u1", "main", 1, running), container("c5", "u3", "main", 2, running)}},
	}
	for _, s := range steps {
		rt.sandboxes, rt.containers = s.sandboxes, s.containers
		if err := o.Sample(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReport()
	o.Report(r)
	if n := r.Count(DuplicateSandboxes); n != 1 {
		t.Errorf("duplicate sandboxes = %d, want 1 (u1):\n%s", n, r)
	}
	if n := r.Count(UnexpectedRestarts); n != 3 {
		t.Errorf("unexpected restarts = %d, want 3 (u1 once, u3 twice):\n%s", n, r)
	}
	if n := r.Count(StartsCutOff); n != 1 {
		t.Errorf("starts cut off = %d, want 1 (u4):\n%s", n, r)
	}
	if d := r.Details(); !strings.Contains(d, "u1") || strings.Contains(d, "u2") || !strings.Contains(d, "c1 (ran 0s, exit 137)") {
		t.Errorf("details name the wrong pods or instances:\n%s", d)
	}
	if nz := r.NonZero(); len(nz) != 2 {
		t.Errorf("NonZero = %v, want duplicates and unexpected restarts only", nz)
	}
}
