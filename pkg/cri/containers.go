package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates (but does not start) a container in the sandbox
// podSandboxID and returns its id. sandboxCfg is the config the sandbox was
// run with; the runtime needs it again.
func (c *Client) CreateContainer(ctx context.Context, podSandboxID string, cfg *runtimeapi.ContainerConfig, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  podSandboxID,
		Config:        cfg,
		SandboxConfig: sandboxCfg,
	})
	if err != nil {
		obj := fmt.Sprintf("%q in sandbox %s", cfg.GetMetadata().GetName(), podSandboxID)
		return "", translate("CreateContainer", obj, err)
	}
	return resp.GetContainerId(), nil
}

// StartContainer starts a created container.
func (c *Client) StartContainer(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	_, err := c.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	return translate("StartContainer", id, err)
}

// StopContainer asks the container to stop (its stop signal), waits up to
// timeout seconds and then kills it. Stopping a stopped container succeeds.
//
// The call's deadline is timeout plus CallTimeout: the runtime legitimately
// takes the whole grace period before it answers.
func (c *Client) StopContainer(ctx context.Context, id string, timeout int64) error {
	if timeout < 0 {
		timeout = 0
	}
	ctx, cancel := context.WithTimeout(ctx, callDeadline(timeout, c.callTimeout))
	defer cancel()
	_, err := c.runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{
		ContainerId: id,
		Timeout:     timeout,
	})
	return translate("StopContainer", id, err)
}

// RemoveContainer removes the container, killing it first if it still runs.
// Removing a container that is already gone succeeds.
func (c *Client) RemoveContainer(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	_, err := c.runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	return translate("RemoveContainer", id, err)
}

// ListContainers lists the containers matching filter (nil: all of them).
func (c *Client) ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: filter})
	if err != nil {
		return nil, translate("ListContainers", "", err)
	}
	return resp.GetContainers(), nil
}

// ContainerStatus returns the container's status; with verbose the runtime
// adds its info map. A container that does not exist gives an
// errdefs.ErrNotFound-class error.
func (c *Client) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{
		ContainerId: id,
		Verbose:     verbose,
	})
	if err != nil {
		return nil, translate("ContainerStatus", id, err)
	}
	return resp, nil
}

// ExecSync runs cmd in the container and returns its output and exit code.
// A command that ran and exited non-zero is not an error: err is only set
// when the command could not be run or did not finish.
//
// CRI counts the exec timeout in whole seconds, so timeout is rounded up
// (1500ms runs with 2s). timeout <= 0 asks the runtime for no timeout; the
// call is then still bounded by CallTimeout. Otherwise the call's deadline is
// the (rounded) timeout plus CallTimeout, so the runtime's own timeout fires
// first and reports it.
func (c *Client) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error) {
	var seconds int64
	if timeout > 0 {
		seconds = int64(timeout / time.Second)
		if timeout%time.Second != 0 {
			seconds++
		}
	}
	ctx, cancel := context.WithTimeout(ctx, callDeadline(seconds, c.callTimeout))
	defer cancel()
	resp, err := c.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{
		ContainerId: id,
		Cmd:         cmd,
		Timeout:     seconds,
	})
	if err != nil {
		return nil, nil, 0, translate("ExecSync", id, err)
	}
	return resp.GetStdout(), resp.GetStderr(), resp.GetExitCode(), nil
}

// MaxWaitSeconds bounds the seconds a call may legitimately wait (a grace period, an exec
// timeout): 100 years, "forever" for a pod, and far below where seconds*time.Second plus a
// call timeout would overflow into a deadline in the past. Callers clamp pods' seconds
// fields to it too.
const MaxWaitSeconds = 100 * 365 * 24 * 60 * 60

// callDeadline is how long a call that waits seconds may take: seconds plus extra for the
// call itself, with seconds clamped to [0, MaxWaitSeconds].
func callDeadline(seconds int64, extra time.Duration) time.Duration {
	seconds = min(max(seconds, 0), MaxWaitSeconds)
	return time.Duration(seconds)*time.Second + extra
}
