package podmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// terminate stops every container with the pod's grace period (the runtime sends SIGTERM,
// then SIGKILL at the deadline), stops and removes the sandboxes (CNI DEL runs inside
// StopPodSandbox while the netns still exists), and removes the pod's log directory.
// NotFound counts as done, so a retry after a partial failure picks up where it stopped.
//
// It runs on a context of its own, detached from the agent's: an agent shutting down in the
// middle does not leave a half-killed pod behind for lack of time.
func (w *worker) terminate(ctx context.Context, pod *v1.Pod) error {
	grace := gracePeriod(pod)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(grace)*time.Second+2*time.Minute)
	defer cancel()
	st, err := w.observe(ctx)
	if err != nil {
		return err
	}
	w.log.WithField("gracePeriod", grace).Info("terminating pod")

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	record := func(err error) {
		if err != nil && !errdefs.IsNotFound(err) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	for _, c := range st.containers {
		if c.state() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		wg.Add(1)
		go func(c *containerInfo) {
			defer wg.Done()
			if err := w.m.rt.StopContainer(ctx, c.c.Id, grace); err != nil {
				record(fmt.Errorf("stop container %q: %w", c.name(), err))
			}
		}(c)
	}
	wg.Wait()
	if len(errs) > 0 {
		// Keep the sandbox (and its network) until every container is really down.
		return errors.Join(errs...)
	}
	for _, sb := range st.sandboxes {
		record(w.m.rt.StopPodSandbox(ctx, sb.Id))
		record(w.m.rt.RemovePodSandbox(ctx, sb.Id))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if pod.Name != "" {
		if err := os.RemoveAll(w.m.podLogDir(pod)); err != nil {
			return fmt.Errorf("remove pod log directory: %w", err)
		}
	}
	return nil
}
