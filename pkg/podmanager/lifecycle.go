package podmanager

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
)

// Hook reasons as the kubelet spells them.
const (
	reasonPostStartHookError = "PostStartHookError"
	reasonFailedPostStart    = "FailedPostStartHook"
)

// hookClient runs httpGet hooks: one connection per call, certificates not checked (as the
// kubelet's hooks), no redirects followed across hosts.
var hookClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does the same for hooks
		DisableKeepAlives: true,
	},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Hostname() != via[0].URL.Hostname() {
			return http.ErrUseLastResponse // the redirect is the answer
		}
		if len(via) >= 10 {
			return fmt.Errorf("stopped after %d redirects", len(via))
		}
		return nil
	},
}

// runHook runs a lifecycle handler against one container instance. It is bounded by ctx:
// postStart by the pod's grace period, preStop by what is left of it.
func (w *worker) runHook(ctx context.Context, c *v1.Container, containerID string, h *v1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		timeout := time.Duration(0)
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		stdout, stderr, code, err := w.m.rt.ExecSync(ctx, containerID, h.Exec.Command, timeout)
		if err != nil {
			return fmt.Errorf("exec %q: %w", h.Exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("exec %q exited %d: %s", h.Exec.Command, code, strings.TrimSpace(string(stderr)+string(stdout)))
		}
		return nil
	case h.HTTPGet != nil:
		return w.httpHook(ctx, c, h.HTTPGet)
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.m.cfg.Clock.After(seconds(h.Sleep.Seconds)):
			return nil
		}
	case h.TCPSocket != nil:
		return fmt.Errorf("tcpSocket is not a supported lifecycle handler")
	}
	return fmt.Errorf("lifecycle handler has no action")
}

func (w *worker) httpHook(ctx context.Context, c *v1.Container, g *v1.HTTPGetAction) error {
	host := g.Host
	if host == "" {
		host = firstIP(w.podIPs)
	}
	port, err := prober.ResolvePort(g.Port, c.Name, c.Ports)
	if err != nil {
		return err
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if u.Path, u.RawQuery, _ = strings.Cut(g.Path, "?"); u.Path == "" {
		u.Path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("httpGet %s: %w", u, err)
	}
	for _, hd := range g.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	resp, err := hookClient.Do(req)
	if err != nil {
		return fmt.Errorf("httpGet %s: %w", u, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("httpGet %s: HTTP %d", u, resp.StatusCode)
	}
	return nil
}

// stopContainer stops one running container on its own (a failed probe or postStart, a
// broken sandbox) with grace seconds, preStop included.
func (w *worker) stopContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, containerID string, grace int64) error {
	return w.stopContainerBy(ctx, c, containerID, w.m.cfg.Clock.Now().Add(seconds(grace)), grace > 0)
}

// stopContainerBy stops one running container the way the kubelet does: preStop first,
// bounded by deadline; then the runtime's stop signal with what is left until deadline,
// but never less than minStopGrace, then SIGKILL. Without grace (a grace period of 0, "stop
// immediately via the kill signal" in the API's words) there is no preStop and no stop signal.
// Pod termination passes one deadline for all its containers, so preStop counts against it.
func (w *worker) stopContainerBy(ctx context.Context, c *v1.Container, containerID string, deadline time.Time, graceful bool) error {
	if !graceful {
		return w.m.rt.StopContainer(ctx, containerID, 0)
	}
	clk := w.m.cfg.Clock
	if left := deadline.Sub(clk.Now()); left > 0 && c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		// A timeout, not the deadline itself: the deadline is on the injected clock, the
		// context on the real one.
		hookCtx, cancel := context.WithTimeout(ctx, left)
		if err := w.runHook(hookCtx, c, containerID, c.Lifecycle.PreStop); err != nil {
			w.log.WithError(err).WithField("container", c.Name).Warn("preStop hook failed")
		}
		cancel()
	}
	return w.m.rt.StopContainer(ctx, containerID, stopTimeout(deadline.Sub(clk.Now())))
}

// stopSignal maps lifecycle.stopSignal to CRI; unset leaves the image's STOPSIGNAL (or
// SIGTERM) to the runtime.
func stopSignal(c *v1.Container) runtimeapi.Signal {
	if c.Lifecycle == nil || c.Lifecycle.StopSignal == nil {
		return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
	}
	name := "SIGNAL_" + strings.NewReplacer("+", "PLUS", "-", "MINUS").Replace(string(*c.Lifecycle.StopSignal))
	return runtimeapi.Signal(runtimeapi.Signal_value[name])
}
