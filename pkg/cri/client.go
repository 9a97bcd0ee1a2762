package cri

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
)

const (
	// DefaultCallTimeout bounds an ordinary CRI call (the kubelet's
	// runtime-request-timeout default).
	DefaultCallTimeout = 2 * time.Minute
	// DefaultPullTimeout bounds one PullImage call.
	DefaultPullTimeout = 10 * time.Minute

	// maxMsgSize is the largest message sent or received, as in the kubelet:
	// ListContainers on a busy node easily exceeds gRPC's 4 MiB default.
	maxMsgSize = 16 << 20

	// Reconnect pacing of the gRPC channel itself. gRPC's defaults back off up
	// to two minutes between connection attempts, which would keep a Client
	// failing long after containerd came back; like the kubelet we cap it at a
	// few seconds, which costs nothing on a local socket.
	reconnectBaseDelay      = 100 * time.Millisecond
	reconnectMaxDelay       = 3 * time.Second
	reconnectConnectTimeout = 5 * time.Second
)

// Options are the optional knobs of a Client. The zero value is usable.
type Options struct {
	// CallTimeout is the per-call deadline for ordinary calls, applied on top
	// of the caller's context. StopContainer gets its stop timeout plus
	// CallTimeout, ExecSync its exec timeout plus CallTimeout.
	// Zero or negative means DefaultCallTimeout (2m).
	CallTimeout time.Duration
	// PullTimeout is the deadline of one PullImage call.
	// Zero or negative means DefaultPullTimeout (10m).
	PullTimeout time.Duration
	// Metrics, when set, counts and times every CRI call and event-stream reconnect
	// (NewMetrics). Nil records nothing.
	Metrics *Metrics
}

// Client is a stateless CRI v1 runtime and image service client over one
// unix socket. It is safe for concurrent use. Create it with New and release
// it with Close.
type Client struct {
	endpoint string // normalised, "unix:///abs/path"
	path     string // socket path

	conn    *grpc.ClientConn
	runtime runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient

	callTimeout time.Duration
	pullTimeout time.Duration
	metrics     *Metrics // nil: no metrics

	// clock, backoffInitial and backoffMax pace WaitReady and RunEvents'
	// resubscriptions; tests replace the clock with a fake one so they
	// never sleep.
	clock          clock.Clock
	backoffInitial time.Duration
	backoffMax     time.Duration
}

// New returns a Client for the CRI runtime at endpoint, which is either
// "unix:///abs/path" or a bare absolute path. It does not connect: the
// channel is dialled on the first call and redialled by gRPC whenever the
// runtime restarts, so New only fails on a malformed endpoint. Use WaitReady
// to find out whether the runtime is actually there.
func New(endpoint string, opts Options) (*Client, error) {
	path, err := socketPath(endpoint)
	if err != nil {
		return nil, err
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.PullTimeout <= 0 {
		opts.PullTimeout = DefaultPullTimeout
	}

	var extra []grpc.DialOption
	if opts.Metrics != nil {
		extra = append(extra, grpc.WithChainUnaryInterceptor(opts.Metrics.unaryInterceptor))
	}
	conn, err := dialUnix(path, extra...)
	if err != nil {
		return nil, fmt.Errorf("runtime endpoint %s: %w", endpoint, err)
	}
	return &Client{
		endpoint:       "unix://" + path,
		path:           path,
		conn:           conn,
		runtime:        runtimeapi.NewRuntimeServiceClient(conn),
		images:         runtimeapi.NewImageServiceClient(conn),
		callTimeout:    opts.CallTimeout,
		pullTimeout:    opts.PullTimeout,
		metrics:        opts.Metrics,
		clock:          clock.RealClock{},
		backoffInitial: defaultReadyBackoffInitial,
		backoffMax:     defaultReadyBackoffMax,
	}, nil
}

// dialUnix returns a lazily dialled gRPC channel to the unix socket at path,
// with the message limits and reconnect pacing described above. RunEvents
// uses it too when containerd's API is on another socket than CRI. extra adds options (the
// CRI connection's metrics interceptor; containerd's own API is not a CRI operation).
func dialUnix(path string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
		grpc.WithAuthority("localhost"),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMsgSize),
			grpc.MaxCallSendMsgSize(maxMsgSize),
		),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  reconnectBaseDelay,
				Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter:     backoff.DefaultConfig.Jitter,
				MaxDelay:   reconnectMaxDelay,
			},
			MinConnectTimeout: reconnectConnectTimeout,
		}),
	}, extra...)
	return grpc.NewClient("unix://"+path, opts...)
}

// socketPath validates endpoint and returns the socket path it names.
func socketPath(endpoint string) (string, error) {
	if endpoint == "" {
		return "", fmt.Errorf("runtime endpoint is empty: want unix:///path/to/socket")
	}
	p := endpoint
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return "", fmt.Errorf("runtime endpoint %q: %w", endpoint, err)
		}
		if u.Scheme != "unix" {
			return "", fmt.Errorf("runtime endpoint %q: unsupported scheme %q: want unix:///path/to/socket", endpoint, u.Scheme)
		}
		if u.Host != "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("runtime endpoint %q: want unix:///path/to/socket (an absolute path after unix://)", endpoint)
		}
		p = u.Path
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("runtime endpoint %q: socket path must be absolute", endpoint)
	}
	return filepath.Clean(p), nil
}

// Close releases the connection. Calls made after Close fail with a
// Canceled-class error.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Endpoint returns the runtime endpoint in normalised form,
// "unix:///abs/path", for logs and messages.
func (c *Client) Endpoint() string {
	return c.endpoint
}

// Version asks the runtime for its name, version and CRI API version.
func (c *Client) Version(ctx context.Context) (*runtimeapi.VersionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"})
	if err != nil {
		return nil, translate("Version", "", err)
	}
	return resp, nil
}

// Status returns the runtime's conditions (RuntimeReady, NetworkReady); with
// verbose the runtime adds free-form debug info.
func (c *Client) Status(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.Status(ctx, &runtimeapi.StatusRequest{Verbose: verbose})
	if err != nil {
		return nil, translate("Status", "", err)
	}
	return resp, nil
}
