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

// terminate stops the pod's containers within its grace period, then stops and removes its
// sandboxes (CNI DEL runs inside StopPodSandbox while the netns still exists) and removes its
// log directory. Each container runs its preStop hook first, then gets the runtime's stop
// signal with what is left of the grace period, then SIGKILL. App containers stop together;
// sidecars stop after them, the last started first. NotFound counts as done, so a retry
// after a partial failure picks up where it stopped.
//
// It runs on a context of its own, detached from the agent's: an agent shutting down in the
// middle does not leave a half-killed pod behind for lack of time. That context outlasts the
// grace period by terminateSlack, for the minStopGrace of late containers and for the CRI
// calls around the stops.
func (w *worker) terminate(ctx context.Context, pod *v1.Pod) error {
	grace := gracePeriod(pod)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), seconds(grace)+terminateSlack)
	defer cancel()
	st, err := w.observe(ctx)
	if err != nil {
		return err
	}
	w.log.WithField("gracePeriod", grace).Info("terminating pod")
	deadline := w.m.cfg.Clock.Now().Add(seconds(grace))

	var (
		mu   sync.Mutex
		errs []error
	)
	record := func(err error) {
		if err != nil && !errdefs.IsNotFound(err) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	stop := func(ci *containerInfo) {
		w.event(pod, v1.EventTypeNormal, eventKilling, "Stopping container "+ci.name())
		if err := w.stopContainerBy(ctx, specContainer(pod, ci.name()), ci.c.Id, deadline, grace > 0); err != nil {
			record(fmt.Errorf("stop container %q: %w", ci.name(), err))
		}
	}
	var wg sync.WaitGroup
	for _, ci := range st.containers {
		if ci.state() != runtimeapi.ContainerState_CONTAINER_RUNNING || isSidecarName(pod, ci.name()) {
			continue
		}
		wg.Add(1)
		go func(ci *containerInfo) {
			defer wg.Done()
			stop(ci)
		}(ci)
	}
	wg.Wait()
	for i := len(pod.Spec.InitContainers) - 1; i >= 0; i-- {
		c := &pod.Spec.InitContainers[i]
		if l := st.latest(c.Name); isSidecar(c) && l != nil && l.state() == runtimeapi.ContainerState_CONTAINER_RUNNING {
			stop(l)
		}
	}
	if len(errs) > 0 {
		// Keep the sandbox (and its network) until every container is really down.
		return errors.Join(errs...)
	}
	if w.m.cfg.Prober != nil {
		w.m.cfg.Prober.RemovePod(w.uid)
	}
	for _, sb := range st.sandboxes {
		record(w.m.rt.StopPodSandbox(ctx, sb.Id))
		record(w.m.rt.RemovePodSandbox(ctx, sb.Id))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if w.m.cfg.Volumes != nil {
		if err := w.m.cfg.Volumes.TearDown(w.uid); err != nil {
			return fmt.Errorf("tear down volumes: %w", err)
		}
	}
	if pod.Name != "" {
		if err := os.RemoveAll(w.m.podLogDir(pod)); err != nil {
			return fmt.Errorf("remove pod log directory: %w", err)
		}
	}
	return nil
}

// terminateSlack is how long terminate's context outlasts the grace period.
const terminateSlack = 2 * time.Minute

// specContainer finds a container of the pod's spec by name; nil for pods rebuilt from the
// runtime (orphans), which have no spec and so no hooks.
func specContainer(pod *v1.Pod, name string) *v1.Container {
	for _, list := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func isSidecarName(pod *v1.Pod, name string) bool {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return isSidecar(&pod.Spec.InitContainers[i])
		}
	}
	return false
}
