package cri

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/connectivity"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// WaitReady retries Version after 500ms, doubling up to 30s.
	defaultReadyBackoffInitial = 500 * time.Millisecond
	defaultReadyBackoffMax     = 30 * time.Second
	// stillWaitingEvery spaces the "still waiting" lines of an unchanged problem.
	stillWaitingEvery = 30 * time.Second
	// listenCheckTimeout bounds the raw dial that tells "nothing listens"
	// from "something listens but does not speak gRPC".
	listenCheckTimeout = time.Second

	// wantAPIVersion is the CRI API version this package speaks.
	wantAPIVersion = "v1"
)

// problemKind is what is wrong with the endpoint, as far as WaitReady can
// tell. A change of kind is logged; the same kind again is not.
type problemKind int

const (
	problemNone problemKind = iota
	problemUnreachable
	problemNotGRPC
	problemNotCRI
	problemWrongVersion
	problemFailing
)

func (k problemKind) String() string {
	switch k {
	case problemNone:
		return "none"
	case problemUnreachable:
		return "not reachable"
	case problemNotGRPC:
		return "not gRPC"
	case problemNotCRI:
		return "not CRI v1"
	case problemWrongVersion:
		return "wrong CRI API version"
	default:
		return "Version failing"
	}
}

type problem struct {
	kind problemKind
	err  error // names the endpoint and what is wrong; keeps the class
}

// WaitReady blocks until the runtime answers Version with CRI API version v1,
// and returns that answer. It retries with exponential backoff (500ms
// doubling to 30s) for as long as ctx allows: containerd may still be
// starting, or may be restarted with a fixed configuration, and under
// systemd the agent should simply become ready when the runtime does.
// Bound ctx to give up sooner.
//
// What is wrong is diagnosed on every attempt and logged at Warn on log when
// it first appears and whenever it changes (not reachable, accepts
// connections but is not gRPC, does not serve CRI v1, wrong API version, or
// Version itself failing); while it stays the same, a short Info line with
// the attempt count appears at most every 30s. log may be nil (the standard
// logger is used).
//
// When ctx ends first, the error names the endpoint and the last problem
// (keeping its errdefs class, e.g. ErrUnavailable or ErrNotImplemented) and
// also wraps ctx.Err().
func (c *Client) WaitReady(ctx context.Context, log *logrus.Entry) (*runtimeapi.VersionResponse, error) {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	log = log.WithField("endpoint", c.endpoint)

	start := c.clock.Now()
	lastReport := start
	delay := c.backoffInitial
	var last problem
	for attempt := 1; ; attempt++ {
		resp, err := c.Version(ctx)
		if err == nil && resp.GetRuntimeApiVersion() == wantAPIVersion {
			if last.kind != problemNone {
				log.WithFields(logrus.Fields{
					"attempts": attempt,
					"waited":   c.clock.Since(start).Round(time.Millisecond).String(),
				}).Info("container runtime is ready")
			}
			return resp, nil
		}
		if err != nil && ctx.Err() != nil {
			// The caller's context cut this attempt short; its error says
			// nothing about the runtime.
			return nil, c.gaveUp(last, attempt-1, ctx.Err())
		}

		p := c.diagnose(ctx, resp, err)
		switch {
		case p.kind != last.kind:
			log.WithField("attempt", attempt).WithError(p.err).Warn("container runtime not usable yet")
			lastReport = c.clock.Now()
		case c.clock.Since(lastReport) >= stillWaitingEvery:
			log.WithFields(logrus.Fields{
				"attempts": attempt,
				"problem":  p.kind.String(),
				"waited":   c.clock.Since(start).Round(time.Second).String(),
			}).Info("still waiting for container runtime")
			lastReport = c.clock.Now()
		}
		last = p

		t := c.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, c.gaveUp(last, attempt, ctx.Err())
		case <-t.C():
		}
		delay = min(2*delay, c.backoffMax)
	}
}

// diagnose turns a failed (err != nil) or unacceptable (wrong API version)
// Version answer into one problem that says what is wrong with the endpoint.
// It decides by error class and channel state, never by message text.
func (c *Client) diagnose(ctx context.Context, resp *runtimeapi.VersionResponse, err error) problem {
	switch {
	case err == nil:
		return problem{problemWrongVersion, fmt.Errorf(
			"runtime endpoint %s speaks CRI API version %q (runtime %s %s), want %s: %w",
			c.endpoint, resp.GetRuntimeApiVersion(), resp.GetRuntimeName(), resp.GetRuntimeVersion(),
			wantAPIVersion, errdefs.ErrNotImplemented)}

	case errdefs.IsNotImplemented(err):
		// A gRPC server answered, but has no runtime.v1.RuntimeService.
		return problem{problemNotCRI, fmt.Errorf(
			"runtime endpoint %s does not serve CRI v1 (is it containerd with the CRI plugin enabled?): %w",
			c.endpoint, err)}

	case (errdefs.IsUnavailable(err) || errdefs.IsDeadlineExceeded(err)) &&
		c.conn.GetState() != connectivity.Ready:
		// No gRPC connection could be made. Whether anything listens on the
		// socket tells a missing runtime from a wrong socket.
		if c.listening(ctx) {
			return problem{problemNotGRPC, fmt.Errorf(
				"runtime endpoint %s accepts connections but does not answer gRPC (is it the runtime's gRPC socket?): %w",
				c.endpoint, err)}
		}
		return problem{problemUnreachable, fmt.Errorf("runtime endpoint %s: not reachable: %w", c.endpoint, err)}

	default:
		return problem{problemFailing, fmt.Errorf("runtime endpoint %s: Version failed: %w", c.endpoint, err)}
	}
}

// listening reports whether something accepts connections on the socket.
func (c *Client) listening(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, listenCheckTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// gaveUp is WaitReady's error when ctx ends first: the last problem seen,
// with ctx's error also in the chain.
func (c *Client) gaveUp(last problem, attempts int, ctxErr error) error {
	if last.err == nil {
		return fmt.Errorf("runtime endpoint %s: stopped waiting before the runtime answered: %w", c.endpoint, ctxErr)
	}
	return fmt.Errorf("%w (stopped waiting after %d attempts: %w)", last.err, attempts, ctxErr)
}
