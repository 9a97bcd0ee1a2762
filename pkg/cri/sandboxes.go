package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RunPodSandbox creates and starts a pod sandbox (which, on containerd, also
// runs the CNI ADD) and returns its id. runtimeHandler selects the runtime
// class; empty means the runtime's default.
func (c *Client) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{
		Config:         cfg,
		RuntimeHandler: runtimeHandler,
	})
	if err != nil {
		return "", translate("RunPodSandbox", podRef(cfg), err)
	}
	return resp.GetPodSandboxId(), nil
}

// StopPodSandbox stops the sandbox, kills any container still running in it
// and releases its network. The runtime treats it as idempotent.
func (c *Client) StopPodSandbox(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	_, err := c.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	return translate("StopPodSandbox", id, err)
}

// RemovePodSandbox removes the sandbox and every container in it. Removing a
// sandbox that is already gone succeeds.
func (c *Client) RemovePodSandbox(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	_, err := c.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return translate("RemovePodSandbox", id, err)
}

// PodSandboxStatus returns the sandbox's status; with verbose the runtime
// adds its info map (on containerd, JSON with the netns path). A sandbox
// that does not exist gives an errdefs.ErrNotFound-class error.
func (c *Client) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{
		PodSandboxId: id,
		Verbose:      verbose,
	})
	if err != nil {
		return nil, translate("PodSandboxStatus", id, err)
	}
	return resp, nil
}

// ListPodSandbox lists the sandboxes matching filter (nil: all of them).
func (c *Client) ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: filter})
	if err != nil {
		return nil, translate("ListPodSandbox", "", err)
	}
	return resp.GetItems(), nil
}

// podRef names a sandbox config as namespace/name for error messages.
func podRef(cfg *runtimeapi.PodSandboxConfig) string {
	md := cfg.GetMetadata()
	return md.GetNamespace() + "/" + md.GetName()
}
