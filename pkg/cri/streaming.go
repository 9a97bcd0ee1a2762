package cri

import (
	"context"
	"fmt"
	"net/url"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamOptions are the streams an exec or attach session carries. TTY merges stderr into
// stdout (a terminal has one output), so the runtime rejects TTY together with Stderr.
type StreamOptions struct {
	Stdin  bool
	Stdout bool
	Stderr bool
	TTY    bool
}

// Exec asks the runtime to prepare an interactive exec of cmd in the container and returns
// the runtime's streaming URL. The session itself starts when a client connects to that URL
// (SPDY or WebSocket upgrade) and is not bounded by this call: only preparing it is.
func (c *Client) Exec(ctx context.Context, containerID string, cmd []string, opts StreamOptions) (*url.URL, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.Exec(ctx, &runtimeapi.ExecRequest{
		ContainerId: containerID,
		Cmd:         cmd,
		Tty:         opts.TTY,
		Stdin:       opts.Stdin,
		Stdout:      opts.Stdout,
		Stderr:      opts.Stderr,
	})
	if err != nil {
		return nil, translate("Exec", containerID, err)
	}
	return streamURL("Exec", containerID, resp.GetUrl())
}

// Attach asks the runtime to prepare an attach to the container's main process and returns
// the streaming URL, as Exec.
func (c *Client) Attach(ctx context.Context, containerID string, opts StreamOptions) (*url.URL, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.Attach(ctx, &runtimeapi.AttachRequest{
		ContainerId: containerID,
		Tty:         opts.TTY,
		Stdin:       opts.Stdin,
		Stdout:      opts.Stdout,
		Stderr:      opts.Stderr,
	})
	if err != nil {
		return nil, translate("Attach", containerID, err)
	}
	return streamURL("Attach", containerID, resp.GetUrl())
}

// PortForward asks the runtime to prepare forwarding into the sandbox's network namespace
// and returns the streaming URL. ports may be empty: over SPDY the client names each port
// in its stream headers, which the runtime reads itself.
func (c *Client) PortForward(ctx context.Context, sandboxID string, ports []int32) (*url.URL, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{
		PodSandboxId: sandboxID,
		Port:         ports,
	})
	if err != nil {
		return nil, translate("PortForward", sandboxID, err)
	}
	return streamURL("PortForward", sandboxID, resp.GetUrl())
}

// streamURL parses the runtime's answer. CRI allows a URL relative to the kubelet's own
// streaming server, which only runtimes embedded in the kubelet used; containerd answers an
// absolute http(s) URL on its streaming server, and that is all the agent can proxy to.
func streamURL(op, object, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("cri %s %s: the runtime answered an unparsable streaming URL %q: %w", op, object, raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cri %s %s: the runtime answered streaming URL %q; want an absolute http(s) URL", op, object, raw)
	}
	return u, nil
}
