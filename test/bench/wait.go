package main

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// pollInterval paces the ListContainers polls that tell when to look. They never decide a
// measured time: that comes from the runtime's own timestamps (StartedAt, FinishedAt).
const pollInterval = 20 * time.Millisecond

// waitRunning waits until the pod has want running containers and returns them.
func waitRunning(ctx context.Context, rt *cri.Client, pod string, want int, timeout time.Duration) ([]*runtimeapi.Container, error) {
	var cs []*runtimeapi.Container
	err := poll(ctx, timeout, pollInterval, func() (bool, error) {
		var err error
		cs, err = rt.ListContainers(ctx, &runtimeapi.ContainerFilter{
			State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			LabelSelector: map[string]string{cri.LabelPodName: pod},
		})
		return err == nil && len(cs) >= want, err
	})
	if err != nil {
		return nil, fmt.Errorf("pod %s: waiting for %d running containers: %w", pod, want, err)
	}
	return cs, nil
}

// lastStarted is the latest StartedAt of the containers, as the runtime reports it.
func lastStarted(ctx context.Context, rt *cri.Client, cs []*runtimeapi.Container) (time.Time, error) {
	var last time.Time
	for _, c := range cs {
		st, err := rt.ContainerStatus(ctx, c.Id, false)
		if err != nil {
			return time.Time{}, err
		}
		at := st.GetStatus().GetStartedAt()
		if at == 0 {
			return time.Time{}, fmt.Errorf("container %s has no StartedAt", c.Id)
		}
		if t := time.Unix(0, at); t.After(last) {
			last = t
		}
	}
	return last, nil
}

// waitPodGone waits until the runtime has no sandbox of the pod and the agent no longer lists
// it, so the next sample starts on a quiet agent.
func waitPodGone(ctx context.Context, rt *cri.Client, a *agent, pod string, timeout time.Duration) error {
	err := poll(ctx, timeout, 50*time.Millisecond, func() (bool, error) {
		sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{cri.LabelPodName: pod}})
		if err != nil || len(sbs) > 0 {
			return false, err
		}
		pods, err := a.pods()
		if err != nil {
			return false, err
		}
		for _, p := range pods {
			if p.Name == pod {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("pod %s: waiting for it to be removed: %w", pod, err)
	}
	return nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
