package podmanager

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime is an in-memory CRI runtime + image service: enough state to let the worker's
// decisions be checked without containerd.
type fakeRuntime struct {
	mu         sync.Mutex
	now        int64
	nextID     int
	sandboxes  map[string]*runtimeapi.PodSandbox
	sbConfigs  map[string]*runtimeapi.PodSandboxConfig
	containers map[string]*fakeContainer
	images     map[string]string // name -> image ID
	imageUsers map[string]string // image ID -> the image config's user ("" or absent: none)
	calls      []string

	runSandboxErr error
	pullErr       error
	stopTimeouts  map[string]int64 // container ID -> timeout given to StopContainer
	execs         []string         // "containerID: command" of each ExecSync, in order
	execExit      int32            // what ExecSync answers
	stopOrder     []string         // container names in the order they were stopped
}

type fakeContainer struct {
	c      *runtimeapi.Container
	cfg    *runtimeapi.ContainerConfig
	status *runtimeapi.ContainerStatus
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{
		now:          1_000_000_000,
		sandboxes:    map[string]*runtimeapi.PodSandbox{},
		sbConfigs:    map[string]*runtimeapi.PodSandboxConfig{},
		containers:   map[string]*fakeContainer{},
		images:       map[string]string{"busybox:1.36": "sha256:bb"},
		imageUsers:   map[string]string{},
		stopTimeouts: map[string]int64{},
	}
}

func (f *fakeRuntime) record(call string) {
	f.calls = append(f.calls, call)
	f.now += 1000
	f.nextID++
}

func (f *fakeRuntime) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (f *fakeRuntime) RunPodSandbox(_ context.Context, cfg *runtimeapi.PodSandboxConfig, _ string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RunPodSandbox")
	if f.runSandboxErr != nil {
		return "", f.runSandboxErr
	}
	id := fmt.Sprintf("sb%d", f.nextID)
	f.sandboxes[id] = &runtimeapi.PodSandbox{
		Id: id, Metadata: cfg.Metadata, State: runtimeapi.PodSandboxState_SANDBOX_READY,
		CreatedAt: f.now, Labels: cfg.Labels, Annotations: cfg.Annotations,
	}
	f.sbConfigs[id] = cfg
	return id, nil
}

func (f *fakeRuntime) StopPodSandbox(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StopPodSandbox")
	sb, ok := f.sandboxes[id]
	if !ok {
		return fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	sb.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	for _, c := range f.containers {
		if c.c.PodSandboxId == id && c.c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			f.exitLocked(c, 137)
		}
	}
	return nil
}

func (f *fakeRuntime) RemovePodSandbox(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemovePodSandbox")
	delete(f.sandboxes, id)
	for cid, c := range f.containers {
		if c.c.PodSandboxId == id {
			delete(f.containers, cid)
		}
	}
	return nil
}

func (f *fakeRuntime) PodSandboxStatus(_ context.Context, id string, _ bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	st := &runtimeapi.PodSandboxStatus{Id: id, Metadata: sb.Metadata, State: sb.State}
	if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.7"}
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: st}, nil
}

func (f *fakeRuntime) ListPodSandbox(_ context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, sb := range f.sandboxes {
		if matches(sb.Labels, filter.GetLabelSelector()) {
			out = append(out, proto.Clone(sb).(*runtimeapi.PodSandbox))
		}
	}
	return out, nil
}

func (f *fakeRuntime) CreateContainer(_ context.Context, sbID string, cfg *runtimeapi.ContainerConfig, sbCfg *runtimeapi.PodSandboxConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateContainer")
	if _, ok := f.sandboxes[sbID]; !ok {
		return "", fmt.Errorf("sandbox %s: %w", sbID, errdefs.ErrNotFound)
	}
	id := fmt.Sprintf("c%d", f.nextID)
	f.containers[id] = &fakeContainer{
		c: &runtimeapi.Container{Id: id, PodSandboxId: sbID, Metadata: cfg.Metadata, State: runtimeapi.ContainerState_CONTAINER_CREATED,
			CreatedAt: f.now, Labels: cfg.Labels, Annotations: cfg.Annotations},
		cfg: cfg,
		// As containerd: the status carries the mounts and the log's full path.
		status: &runtimeapi.ContainerStatus{Id: id, Metadata: cfg.Metadata, State: runtimeapi.ContainerState_CONTAINER_CREATED,
			CreatedAt: f.now, ImageRef: cfg.Image.Image, Labels: cfg.Labels, Annotations: cfg.Annotations,
			Mounts: cfg.Mounts, LogPath: filepath.Join(sbCfg.GetLogDirectory(), cfg.LogPath)},
	}
	return id, nil
}

func (f *fakeRuntime) StartContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StartContainer")
	c, ok := f.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	c.c.State, c.status.State, c.status.StartedAt = runtimeapi.ContainerState_CONTAINER_RUNNING, runtimeapi.ContainerState_CONTAINER_RUNNING, f.now
	return nil
}

func (f *fakeRuntime) StopContainer(_ context.Context, id string, timeout int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StopContainer")
	c, ok := f.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	f.stopTimeouts[id] = timeout
	f.stopOrder = append(f.stopOrder, c.c.Metadata.Name)
	f.exitLocked(c, 143)
	return nil
}

func (f *fakeRuntime) RemoveContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveContainer")
	delete(f.containers, id)
	return nil
}

func (f *fakeRuntime) ListContainers(_ context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range f.containers {
		if matches(c.c.Labels, filter.GetLabelSelector()) {
			out = append(out, proto.Clone(c.c).(*runtimeapi.Container))
		}
	}
	return out, nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return &runtimeapi.ContainerStatusResponse{Status: proto.Clone(c.status).(*runtimeapi.ContainerStatus)}, nil
}

func (f *fakeRuntime) ImageStatus(_ context.Context, img *runtimeapi.ImageSpec) (*runtimeapi.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.images[img.Image]
	if !ok {
		for _, known := range f.images {
			if known == img.Image { // looked up by ID, as after a pull
				id, ok = known, true
			}
		}
	}
	if !ok {
		return nil, nil
	}
	out := &runtimeapi.Image{Id: id}
	// As containerd reports the image config's user: a number is Uid, a name is Username.
	if u := f.imageUsers[id]; u != "" {
		if n, err := strconv.ParseInt(u, 10, 64); err == nil {
			out.Uid = &runtimeapi.Int64Value{Value: n}
		} else {
			out.Username = u
		}
	}
	return out, nil
}

func (f *fakeRuntime) PullImage(_ context.Context, img *runtimeapi.ImageSpec, _ *runtimeapi.AuthConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("PullImage")
	if f.pullErr != nil {
		return "", f.pullErr
	}
	id := "sha256:pulled-" + img.Image
	f.images[img.Image] = id
	return id, nil
}

func (f *fakeRuntime) ExecSync(_ context.Context, id string, cmd []string, _ time.Duration) ([]byte, []byte, int32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ExecSync")
	f.execs = append(f.execs, id+": "+strings.Join(cmd, " "))
	if _, ok := f.containers[id]; !ok {
		return nil, nil, 0, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return nil, nil, f.execExit, nil
}

// exit makes the running instance of container name exit with code, as a crash would.
func (f *fakeRuntime) exit(name string, code int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.containers {
		if c.c.Metadata.Name == name && c.c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			f.exitLocked(c, code)
		}
	}
}

func (f *fakeRuntime) exitLocked(c *fakeContainer, code int32) {
	f.now += 1000
	c.c.State, c.status.State = runtimeapi.ContainerState_CONTAINER_EXITED, runtimeapi.ContainerState_CONTAINER_EXITED
	c.status.ExitCode, c.status.FinishedAt = code, f.now
}

// byName returns the instances of the named container.
func (f *fakeRuntime) byName(name string) []*fakeContainer {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeContainer
	for _, c := range f.containers {
		if c.c.Metadata.Name == name {
			out = append(out, c)
		}
	}
	return out
}

var (
	_ Runtime      = (*fakeRuntime)(nil)
	_ ImageService = (*fakeRuntime)(nil)
)
