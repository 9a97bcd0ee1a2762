package cri

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI is the state behind a small fake CRI runtime and image service.
// Each RPC records the deadline it arrived with, then either blocks until
// its context ends (block), returns the configured error (errs), or answers
// from the canned fields.
type fakeCRI struct {
	mu         sync.Mutex
	errs       map[string]error         // guarded by mu; RPC name -> error to return
	block      map[string]bool          // guarded by mu; RPC name -> wait for ctx
	remaining  map[string]time.Duration // guarded by mu; RPC name -> deadline left on arrival
	apiVersion string                   // guarded by mu; Version's RuntimeApiVersion
	images     map[string]*runtimeapi.Image
	lastExec   *runtimeapi.ExecSyncRequest // guarded by mu
	execResp   *runtimeapi.ExecSyncResponse
}

func newFakeCRI() *fakeCRI {
	return &fakeCRI{
		errs:       map[string]error{},
		block:      map[string]bool{},
		remaining:  map[string]time.Duration{},
		apiVersion: "v1",
		images:     map[string]*runtimeapi.Image{},
	}
}

func (f *fakeCRI) setErr(rpc string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[rpc] = err
}

func (f *fakeCRI) setBlock(rpc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.block[rpc] = true
}

// deadlineLeft returns how much time the RPC had left when it arrived, and
// whether it arrived with a deadline at all.
func (f *fakeCRI) deadlineLeft(rpc string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.remaining[rpc]
	return d, ok
}

func (f *fakeCRI) enter(ctx context.Context, rpc string) error {
	f.mu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		f.remaining[rpc] = time.Until(dl)
	}
	err, block := f.errs[rpc], f.block[rpc]
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return err
}

type fakeRuntimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	*fakeCRI
}

func (f fakeRuntimeService) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	if err := f.enter(ctx, "Version"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       "fake",
		RuntimeVersion:    "1.0",
		RuntimeApiVersion: f.apiVersion,
	}, nil
}

func (f fakeRuntimeService) Status(ctx context.Context, _ *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	if err := f.enter(ctx, "Status"); err != nil {
		return nil, err
	}
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{}}, nil
}

func (f fakeRuntimeService) RunPodSandbox(ctx context.Context, _ *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	if err := f.enter(ctx, "RunPodSandbox"); err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: "sb1"}, nil
}

func (f fakeRuntimeService) StopPodSandbox(ctx context.Context, _ *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if err := f.enter(ctx, "StopPodSandbox"); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f fakeRuntimeService) RemovePodSandbox(ctx context.Context, _ *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if err := f.enter(ctx, "RemovePodSandbox"); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (f fakeRuntimeService) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if err := f.enter(ctx, "PodSandboxStatus"); err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: req.GetPodSandboxId()}}, nil
}

func (f fakeRuntimeService) ListPodSandbox(ctx context.Context, _ *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	if err := f.enter(ctx, "ListPodSandbox"); err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{{Id: "sb1"}}}, nil
}

func (f fakeRuntimeService) CreateContainer(ctx context.Context, _ *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	if err := f.enter(ctx, "CreateContainer"); err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: "c1"}, nil
}

func (f fakeRuntimeService) StartContainer(ctx context.Context, _ *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := f.enter(ctx, "StartContainer"); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

func (f fakeRuntimeService) StopContainer(ctx context.Context, _ *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if err := f.enter(ctx, "StopContainer"); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

func (f fakeRuntimeService) RemoveContainer(ctx context.Context, _ *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if err := f.enter(ctx, "RemoveContainer"); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (f fakeRuntimeService) ListContainers(ctx context.Context, _ *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	if err := f.enter(ctx, "ListContainers"); err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{{Id: "c1"}}}, nil
}

func (f fakeRuntimeService) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if err := f.enter(ctx, "ContainerStatus"); err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: req.GetContainerId()}}, nil
}

func (f fakeRuntimeService) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if err := f.enter(ctx, "ExecSync"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastExec = req
	if f.execResp != nil {
		return f.execResp, nil
	}
	return &runtimeapi.ExecSyncResponse{}, nil
}

type fakeImageService struct {
	runtimeapi.UnimplementedImageServiceServer
	*fakeCRI
}

func (f fakeImageService) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	if err := f.enter(ctx, "ImageStatus"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// An absent image is an empty answer, as CRI specifies.
	return &runtimeapi.ImageStatusResponse{Image: f.images[req.GetImage().GetImage()]}, nil
}

func (f fakeImageService) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	if err := f.enter(ctx, "PullImage"); err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: "sha256:0123"}, nil
}

func (f fakeImageService) ListImages(ctx context.Context, _ *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	if err := f.enter(ctx, "ListImages"); err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{}, nil
}

func (f fakeImageService) RemoveImage(ctx context.Context, _ *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	if err := f.enter(ctx, "RemoveImage"); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// testSocketPath returns a fresh socket path in a per-test directory. Unix
// socket paths are limited to about 108 bytes, and t.TempDir embeds the
// test's name, so long names fall back to a short directory.
func testSocketPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) > 80 {
		var err error
		dir, err = os.MkdirTemp("", "cri")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	return filepath.Join(dir, "cri.sock")
}

// serveFake serves f (or, with f nil, a gRPC server with no services at
// all) on path until the returned stop is called or the test ends.
func serveFake(t *testing.T, path string, f *fakeCRI) (stop func()) {
	t.Helper()
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	srv := grpc.NewServer()
	if f != nil {
		runtimeapi.RegisterRuntimeServiceServer(srv, fakeRuntimeService{fakeCRI: f})
		runtimeapi.RegisterImageServiceServer(srv, fakeImageService{fakeCRI: f})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// serveNotGRPC accepts connections on path and answers them with an HTTP/1
// error, like a socket that belongs to something other than a gRPC server.
func serveNotGRPC(t *testing.T, path string) {
	t.Helper()
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
			_ = conn.Close()
		}
	}()
}

// newTestClient returns a Client for path, closed when the test ends.
func newTestClient(t *testing.T, path string, opts Options) *Client {
	t.Helper()
	c, err := New("unix://"+path, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eventually waits, polling, until cond holds; it fails the test after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
