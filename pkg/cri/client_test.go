package cri

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestNewAcceptsUnixEndpointsAndRejectsOthers(t *testing.T) {
	tests := []struct {
		name         string
		endpoint     string
		wantEndpoint string // normalised; empty when New must fail
		wantErr      string
	}{
		{name: "unix URL", endpoint: "unix:///run/containerd/containerd.sock", wantEndpoint: "unix:///run/containerd/containerd.sock"},
		{name: "bare absolute path", endpoint: "/run/containerd/containerd.sock", wantEndpoint: "unix:///run/containerd/containerd.sock"},
		{name: "path is cleaned", endpoint: "unix:///run//containerd/./containerd.sock", wantEndpoint: "unix:///run/containerd/containerd.sock"},
		{name: "empty endpoint is rejected", endpoint: "", wantErr: "runtime endpoint is empty"},
		{name: "tcp scheme is rejected and named", endpoint: "tcp://127.0.0.1:1234", wantErr: `runtime endpoint "tcp://127.0.0.1:1234": unsupported scheme "tcp"`},
		{name: "npipe scheme is rejected", endpoint: "npipe:////./pipe/containerd", wantErr: `unsupported scheme "npipe"`},
		{name: "unix URL with a host is rejected", endpoint: "unix://run/containerd.sock", wantErr: `runtime endpoint "unix://run/containerd.sock"`},
		{name: "relative bare path is rejected", endpoint: "run/containerd.sock", wantErr: "socket path must be absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.endpoint, Options{})
			if tc.wantErr != "" {
				if err == nil {
					_ = c.Close()
					t.Fatalf("New(%q) succeeded, want error containing %q", tc.endpoint, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New(%q) error = %q, want it to contain %q", tc.endpoint, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tc.endpoint, err)
			}
			defer c.Close()
			if got := c.Endpoint(); got != tc.wantEndpoint {
				t.Errorf("Endpoint() = %q, want %q", got, tc.wantEndpoint)
			}
		})
	}
}

func TestNewAppliesDefaultTimeouts(t *testing.T) {
	c, err := New("unix:///nonexistent/cri.sock", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.callTimeout != DefaultCallTimeout || c.pullTimeout != DefaultPullTimeout {
		t.Errorf("timeouts = %v/%v, want %v/%v", c.callTimeout, c.pullTimeout, DefaultCallTimeout, DefaultPullTimeout)
	}
}

func TestRuntimeErrorsReachCallerAsErrdefsClasses(t *testing.T) {
	sandboxCfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"},
	}
	containerCfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}}

	tests := []struct {
		name      string
		rpc       string
		code      codes.Code
		call      func(ctx context.Context, c *Client) error
		is        func(error) bool
		retryable bool
		wantMsg   string // operation and object, as the caller sees them
	}{
		{
			name: "NotFound from ContainerStatus is ErrNotFound",
			rpc:  "ContainerStatus", code: codes.NotFound,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.ContainerStatus(ctx, "c1", false)
				return err
			},
			is: errdefs.IsNotFound, wantMsg: "cri ContainerStatus c1: ",
		},
		{
			name: "NotFound from RemoveContainer is ErrNotFound",
			rpc:  "RemoveContainer", code: codes.NotFound,
			call: func(ctx context.Context, c *Client) error { return c.RemoveContainer(ctx, "c1") },
			is:   errdefs.IsNotFound, wantMsg: "cri RemoveContainer c1: ",
		},
		{
			name: "Unavailable from RunPodSandbox is ErrUnavailable and retryable",
			rpc:  "RunPodSandbox", code: codes.Unavailable,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.RunPodSandbox(ctx, sandboxCfg, "")
				return err
			},
			is: errdefs.IsUnavailable, retryable: true, wantMsg: "cri RunPodSandbox default/web: ",
		},
		{
			name: "InvalidArgument from CreateContainer is ErrInvalidArgument",
			rpc:  "CreateContainer", code: codes.InvalidArgument,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.CreateContainer(ctx, "sb1", containerCfg, sandboxCfg)
				return err
			},
			is: errdefs.IsInvalidArgument, wantMsg: `cri CreateContainer "app" in sandbox sb1: `,
		},
		{
			name: "Unimplemented from Status is ErrNotImplemented",
			rpc:  "Status", code: codes.Unimplemented,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Status(ctx, false)
				return err
			},
			is: errdefs.IsNotImplemented, wantMsg: "cri Status: ",
		},
		{
			name: "DeadlineExceeded from the runtime is context.DeadlineExceeded and retryable",
			rpc:  "StopPodSandbox", code: codes.DeadlineExceeded,
			call: func(ctx context.Context, c *Client) error { return c.StopPodSandbox(ctx, "sb1") },
			is: func(err error) bool {
				return errdefs.IsDeadlineExceeded(err) && errors.Is(err, context.DeadlineExceeded)
			},
			retryable: true, wantMsg: "cri StopPodSandbox sb1: ",
		},
		{
			name: "AlreadyExists from RunPodSandbox is ErrAlreadyExists",
			rpc:  "RunPodSandbox", code: codes.AlreadyExists,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.RunPodSandbox(ctx, sandboxCfg, "runc")
				return err
			},
			is: errdefs.IsAlreadyExists, wantMsg: "cri RunPodSandbox default/web: ",
		},
		{
			name: "NotFound from PodSandboxStatus is ErrNotFound",
			rpc:  "PodSandboxStatus", code: codes.NotFound,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.PodSandboxStatus(ctx, "sb1", true)
				return err
			},
			is: errdefs.IsNotFound, wantMsg: "cri PodSandboxStatus sb1: ",
		},
		{
			name: "Unauthenticated from PullImage is ErrUnauthenticated",
			rpc:  "PullImage", code: codes.Unauthenticated,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.PullImage(ctx, &runtimeapi.ImageSpec{Image: "registry.test/app:1"}, nil, sandboxCfg)
				return err
			},
			is: errdefs.IsUnauthorized, wantMsg: "cri PullImage registry.test/app:1: ",
		},
		{
			name: "Internal from ListContainers is ErrInternal",
			rpc:  "ListContainers", code: codes.Internal,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.ListContainers(ctx, nil)
				return err
			},
			is: errdefs.IsInternal, wantMsg: "cri ListContainers: ",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := testSocketPath(t)
			f := newFakeCRI()
			serveFake(t, path, f)
			f.setErr(tc.rpc, status.Error(tc.code, "the runtime says why"))
			c := newTestClient(t, path, Options{CallTimeout: 10 * time.Second})

			err := tc.call(context.Background(), c)
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			if !tc.is(err) {
				t.Errorf("error %q (%T) is not of the expected class", err, errors.Unwrap(err))
			}
			if got := IsRetryable(err); got != tc.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tc.retryable)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tc.wantMsg) || !strings.Contains(msg, "the runtime says why") {
				t.Errorf("error = %q, want prefix %q and the runtime's message", msg, tc.wantMsg)
			}
			if _, isStatus := status.FromError(err); isStatus {
				t.Errorf("error %q still carries a gRPC status; it must be translated", err)
			}
		})
	}
}

func TestCallGivesUpWithDeadlineExceededAfterCallTimeout(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeCRI()
	serveFake(t, path, f)
	f.setBlock("StartContainer")
	const callTimeout = 200 * time.Millisecond
	c := newTestClient(t, path, Options{CallTimeout: callTimeout})

	start := time.Now()
	err := c.StartContainer(context.Background(), "c1")
	elapsed := time.Since(start)

	if !errdefs.IsDeadlineExceeded(err) || !IsRetryable(err) {
		t.Fatalf("error = %v, want a retryable DeadlineExceeded-class error", err)
	}
	if !strings.HasPrefix(err.Error(), "cri StartContainer c1: ") {
		t.Errorf("error = %q, want it to name the operation and container", err)
	}
	if elapsed < callTimeout || elapsed > 5*time.Second {
		t.Errorf("call returned after %v, want about %v", elapsed, callTimeout)
	}
}

func TestCallerCancellationIsCanceledNotRetryable(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeCRI()
	serveFake(t, path, f)
	f.setBlock("RemovePodSandbox")
	c := newTestClient(t, path, Options{CallTimeout: time.Minute})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.RemovePodSandbox(ctx, "sb1") }()
	eventually(t, "RemovePodSandbox to reach the runtime", func() bool {
		_, arrived := f.deadlineLeft("RemovePodSandbox")
		return arrived
	})
	cancel()
	err := <-errc
	if !errdefs.IsCanceled(err) || IsRetryable(err) {
		t.Fatalf("error = %v, want a non-retryable Canceled-class error", err)
	}
}

func TestEachCallCarriesItsOwnDeadline(t *testing.T) {
	const (
		callTimeout = 5 * time.Second
		pullTimeout = 60 * time.Second
		slack       = time.Second // time spent between setting and reading the deadline
	)
	tests := []struct {
		name   string
		rpc    string
		ctx    func() (context.Context, context.CancelFunc)
		call   func(ctx context.Context, c *Client) error
		want   time.Duration // deadline left when the runtime got the call
		verify func(t *testing.T, f *fakeCRI)
	}{
		{
			name: "ordinary call gets CallTimeout",
			rpc:  "ListContainers",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.ListContainers(ctx, &runtimeapi.ContainerFilter{Id: "c1"})
				return err
			},
			want: callTimeout,
		},
		{
			name: "StopContainer gets its stop timeout plus CallTimeout",
			rpc:  "StopContainer",
			call: func(ctx context.Context, c *Client) error { return c.StopContainer(ctx, "c1", 30) },
			want: 30*time.Second + callTimeout,
		},
		{
			name: "ExecSync gets its timeout rounded up to seconds plus CallTimeout",
			rpc:  "ExecSync",
			call: func(ctx context.Context, c *Client) error {
				_, _, _, err := c.ExecSync(ctx, "c1", []string{"true"}, 1500*time.Millisecond)
				return err
			},
			want: 2*time.Second + callTimeout,
			verify: func(t *testing.T, f *fakeCRI) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if got := f.lastExec.GetTimeout(); got != 2 {
					t.Errorf("ExecSync request timeout = %ds, want 2s", got)
				}
			},
		},
		{
			name: "ExecSync without timeout is still bounded by CallTimeout",
			rpc:  "ExecSync",
			call: func(ctx context.Context, c *Client) error {
				_, _, _, err := c.ExecSync(ctx, "c1", []string{"true"}, 0)
				return err
			},
			want: callTimeout,
		},
		{
			name: "PullImage gets PullTimeout",
			rpc:  "PullImage",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.PullImage(ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, nil)
				return err
			},
			want: pullTimeout,
		},
		{
			name: "a shorter caller deadline wins",
			rpc:  "StartContainer",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 2*time.Second)
			},
			call: func(ctx context.Context, c *Client) error { return c.StartContainer(ctx, "c1") },
			want: 2 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := testSocketPath(t)
			f := newFakeCRI()
			serveFake(t, path, f)
			c := newTestClient(t, path, Options{CallTimeout: callTimeout, PullTimeout: pullTimeout})

			ctx, cancel := context.WithCancel(context.Background())
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			if err := tc.call(ctx, c); err != nil {
				t.Fatalf("call: %v", err)
			}
			left, ok := f.deadlineLeft(tc.rpc)
			if !ok {
				t.Fatalf("%s reached the runtime without a deadline", tc.rpc)
			}
			if left > tc.want || left < tc.want-slack {
				t.Errorf("%s arrived with %v left, want about %v", tc.rpc, left, tc.want)
			}
			if tc.verify != nil {
				tc.verify(t, f)
			}
		})
	}
}

func TestImageStatusOfAbsentImageIsNilWithoutError(t *testing.T) {
	present := &runtimeapi.Image{Id: "sha256:aaa", RepoTags: []string{"busybox:latest"}}
	tests := []struct {
		name      string
		image     string
		rpcErr    error
		wantImage *runtimeapi.Image
		wantErr   func(error) bool
	}{
		{name: "present image is returned", image: "busybox:latest", wantImage: present},
		{name: "absent image is an empty answer", image: "nothere:1"},
		{name: "NotFound from the runtime also means absent", image: "nothere:1", rpcErr: status.Error(codes.NotFound, "no such image")},
		{name: "Unavailable is still an error", image: "busybox:latest", rpcErr: status.Error(codes.Unavailable, "down"), wantErr: errdefs.IsUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := testSocketPath(t)
			f := newFakeCRI()
			f.images["busybox:latest"] = present
			f.setErr("ImageStatus", tc.rpcErr)
			serveFake(t, path, f)
			c := newTestClient(t, path, Options{})

			img, err := c.ImageStatus(context.Background(), &runtimeapi.ImageSpec{Image: tc.image})
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("error = %v, want the expected class", err)
				}
				if img != nil {
					t.Errorf("image = %v with an error, want nil", img)
				}
				return
			}
			if err != nil {
				t.Fatalf("ImageStatus: %v", err)
			}
			if img.GetId() != tc.wantImage.GetId() || (img == nil) != (tc.wantImage == nil) {
				t.Errorf("image = %v, want %v", img, tc.wantImage)
			}
		})
	}
}

func TestExecSyncReportsNonZeroExitWithoutError(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeCRI()
	f.execResp = &runtimeapi.ExecSyncResponse{Stdout: []byte("out"), Stderr: []byte("err"), ExitCode: 3}
	serveFake(t, path, f)
	c := newTestClient(t, path, Options{})

	stdout, stderr, code, err := c.ExecSync(context.Background(), "c1", []string{"sh", "-c", "exit 3"}, time.Second)
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if string(stdout) != "out" || string(stderr) != "err" || code != 3 {
		t.Errorf("ExecSync = %q, %q, %d; want \"out\", \"err\", 3", stdout, stderr, code)
	}
}

func TestCallsReturnWhatTheRuntimeAnswers(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeCRI()
	serveFake(t, path, f)
	c := newTestClient(t, path, Options{})
	ctx := context.Background()

	if id, err := c.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{}, ""); err != nil || id != "sb1" {
		t.Errorf("RunPodSandbox = %q, %v; want sb1", id, err)
	}
	if items, err := c.ListPodSandbox(ctx, nil); err != nil || len(items) != 1 {
		t.Errorf("ListPodSandbox = %v, %v; want one sandbox", items, err)
	}
	if id, err := c.CreateContainer(ctx, "sb1", &runtimeapi.ContainerConfig{}, &runtimeapi.PodSandboxConfig{}); err != nil || id != "c1" {
		t.Errorf("CreateContainer = %q, %v; want c1", id, err)
	}
	if st, err := c.ContainerStatus(ctx, "c1", false); err != nil || st.GetStatus().GetId() != "c1" {
		t.Errorf("ContainerStatus = %v, %v; want status of c1", st, err)
	}
	if ref, err := c.PullImage(ctx, &runtimeapi.ImageSpec{Image: "busybox"}, &runtimeapi.AuthConfig{Username: "u"}, nil); err != nil || ref != "sha256:0123" {
		t.Errorf("PullImage = %q, %v; want sha256:0123", ref, err)
	}
	if err := c.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: "busybox"}); err != nil {
		t.Errorf("RemoveImage: %v", err)
	}
	if _, err := c.ListImages(ctx, nil); err != nil {
		t.Errorf("ListImages: %v", err)
	}
}

func TestClientWorksAgainAfterRuntimeRestart(t *testing.T) {
	path := testSocketPath(t)
	stop := serveFake(t, path, newFakeCRI())
	c := newTestClient(t, path, Options{CallTimeout: 5 * time.Second})
	ctx := context.Background()

	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("Version before restart: %v", err)
	}

	stop()
	_, err := c.Version(ctx)
	if !errdefs.IsUnavailable(err) || !IsRetryable(err) {
		t.Fatalf("Version while the runtime is down = %v, want a retryable Unavailable-class error", err)
	}

	serveFake(t, path, newFakeCRI())
	eventually(t, "the same Client to reach the restarted runtime", func() bool {
		_, err := c.Version(ctx)
		return err == nil
	})
}

func TestCallsAfterCloseFailAsCanceled(t *testing.T) {
	path := testSocketPath(t)
	serveFake(t, path, newFakeCRI())
	c, err := New(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = c.Version(context.Background())
	if !errdefs.IsCanceled(err) || IsRetryable(err) {
		t.Fatalf("Version after Close = %v, want a non-retryable Canceled-class error", err)
	}
}

func TestCallDeadlineNeverOverflows(t *testing.T) {
	for _, tc := range []struct {
		seconds int64
		want    time.Duration
	}{
		{-5, time.Second},
		{0, time.Second},
		{30, 31 * time.Second},
		{10000000000, MaxWaitSeconds*time.Second + time.Second},
		{math.MaxInt64, MaxWaitSeconds*time.Second + time.Second},
	} {
		if got := callDeadline(tc.seconds, time.Second); got != tc.want {
			t.Errorf("callDeadline(%d, 1s) = %v, want %v", tc.seconds, got, tc.want)
		}
	}
}
