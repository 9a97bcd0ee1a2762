package podmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// Waiting reasons as the kubelet spells them.
const (
	reasonCrashLoopBackOff     = "CrashLoopBackOff"
	reasonCreateConfigError    = "CreateContainerConfigError"
	reasonCreateContainerError = "CreateContainerError"
	reasonRunContainerError    = "RunContainerError"
	reasonContainerCreating    = "ContainerCreating"
	reasonPodInitializing      = "PodInitializing"
)

func containerBackoffKey(name string) string { return "container/" + name }

// startOrBackoff starts a new instance of c unless the container is backing off. latest is
// the instance it replaces, if any. The wait after a crash counts from the exit, as the
// kubelet's does; the wait after a failed create or start counts from that failure.
func (w *worker) startOrBackoff(ctx context.Context, pod *v1.Pod, c *v1.Container, sb *runtimeapi.PodSandbox, sbCfg *runtimeapi.PodSandboxConfig, st *podState, latest *containerInfo, again requeue) bool {
	key := containerBackoffKey(c.Name)
	rem := w.backoff.Remaining(key)
	if exit := latest.finishedAt(); !exit.IsZero() {
		rem = max(rem, w.backoff.RemainingSince(key, exit))
	}
	if rem > 0 {
		w.crashRetryAt[c.Name] = w.m.cfg.Clock.Now().Add(rem)
		if cur := w.waiting[c.Name]; cur == nil || cur.Reason == reasonCrashLoopBackOff {
			w.setWaiting(pod, c.Name, &v1.ContainerStateWaiting{
				Reason: reasonCrashLoopBackOff,
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s (next restart in %s)",
					w.backoff.Current(key), c.Name, pod.Name, rem.Round(time.Second)),
			})
		}
		again(rem)
		return false
	}
	var restarts int32
	if latest != nil {
		restarts = latest.restartCount() + 1
	}
	started, acted := w.startContainer(ctx, pod, c, sb, sbCfg, st, restarts, again)
	delete(w.crashRetryAt, c.Name)
	if started && latest != nil {
		// A restart: the next one has to wait, longer each time (reset after quiet running).
		w.backoff.Failed(key)
		w.m.cfg.Metrics.countRestart(w.restartReason(latest, sb))
	}
	return acted
}

// startContainer pulls the image if needed, then creates and starts one instance of c.
func (w *worker) startContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, sb *runtimeapi.PodSandbox, sbCfg *runtimeapi.PodSandboxConfig, st *podState, restarts int32, again requeue) (started, acted bool) {
	attempt := uint32(restarts)
	log := w.log.WithFields(logrus.Fields{"container": c.Name, "attempt": attempt})
	imageRef, img, waiting := w.ensureImage(ctx, pod, c, sbCfg, again)
	if waiting != nil {
		w.setWaiting(pod, c.Name, waiting)
		return false, false
	}
	failed := func(reason string, err error) (bool, bool) {
		w.setWaiting(pod, c.Name, &v1.ContainerStateWaiting{Reason: reason, Message: err.Error()})
		wait := w.backoff.Failed(containerBackoffKey(c.Name))
		log.WithError(err).WithFields(logrus.Fields{"reason": reason, "retryIn": wait}).Warn("container failed to start")
		again(wait)
		return false, true
	}
	start := w.stepStart()
	if img == nil && runAsNonRoot(pod, c) && effectiveRunAsUser(pod, c) == nil {
		// Just pulled, and the image's user decides: one more runtime call, only then.
		var err error
		img, err = w.m.images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: c.Image})
		if err == nil && img == nil {
			err = fmt.Errorf("image %s is no longer present", imageRef)
		}
		if err != nil {
			err = fmt.Errorf("inspect image %q for its user: %w", c.Image, err)
			w.step(StepCreate, c.Name, "", start, err)
			return failed(reasonImageInspectError, err)
		}
	}
	if err := verifyRunAsNonRoot(pod, c, img); err != nil {
		w.step(StepCreate, c.Name, "", start, err)
		return failed(reasonCreateConfigError, err)
	}
	cfg, err := w.containerConfig(pod, c, attempt, imageRef, st)
	if err != nil {
		w.step(StepCreate, c.Name, "", start, err)
		return failed(reasonCreateConfigError, err)
	}
	id, err := w.m.rt.CreateContainer(ctx, sb.Id, cfg, sbCfg)
	w.step(StepCreate, c.Name, "", start, err)
	if err != nil {
		return failed(reasonCreateContainerError, err)
	}
	w.m.own(id, w.uid)
	w.event(pod, v1.EventTypeNormal, eventCreated, "Created container: "+c.Name)
	start = w.stepStart()
	err = w.m.rt.StartContainer(ctx, id)
	w.step(StepStart, c.Name, "", start, err)
	if err != nil {
		// Remove the instance that never ran, so the next pass makes a fresh one.
		if rmErr := w.m.rt.RemoveContainer(ctx, id); rmErr != nil && !errdefs.IsNotFound(rmErr) {
			log.WithError(rmErr).Warn("removing a container that failed to start failed")
		}
		return failed(reasonRunContainerError, err)
	}
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		hookCtx, cancel := context.WithTimeout(ctx, seconds(gracePeriod(pod)))
		start := w.stepStart()
		err := w.runHook(hookCtx, c, id, c.Lifecycle.PostStart)
		w.step(StepPostStart, c.Name, "", start, err)
		cancel()
		if err != nil {
			// As the kubelet: a failed postStart kills the container; the restart policy
			// decides what next.
			log.WithError(err).Warn("postStart hook failed; killing the container")
			w.event(pod, v1.EventTypeWarning, eventPostStartFailed, err.Error())
			w.kills[id] = kill{note: fmt.Sprintf("%s: %v", reasonFailedPostStart, err), reason: RestartReasonPostStartHook}
			if stopErr := w.stopContainer(ctx, pod, c, id, gracePeriod(pod)); stopErr != nil && !errdefs.IsNotFound(stopErr) {
				log.WithError(stopErr).Warn("killing a container whose postStart failed failed")
			}
			w.waiting[c.Name] = &v1.ContainerStateWaiting{Reason: reasonPostStartHookError, Message: err.Error()}
			return true, true
		}
	}
	delete(w.waiting, c.Name)
	w.event(pod, v1.EventTypeNormal, eventStarted, "Started container "+c.Name)
	log.WithField("containerID", id).Info("container started")
	w.removeOldInstances(ctx, pod, st, c.Name)
	return true, true
}

// restartReason says why the instance a restart replaces ended, as one of the fixed
// RestartReason values: what the agent did to it if it killed it, else how it exited.
func (w *worker) restartReason(prev *containerInfo, sb *runtimeapi.PodSandbox) string {
	if k, ok := w.kills[prev.c.Id]; ok {
		return k.reason
	}
	if prev.c.PodSandboxId != sb.Id {
		return RestartReasonSandboxChanged
	}
	switch {
	case prev.status != nil && prev.status.Reason == RestartReasonOOMKilled:
		return RestartReasonOOMKilled
	case prev.exitCode() == 0:
		return RestartReasonCompleted
	}
	return RestartReasonError
}

// startCreated starts an instance that was created but never started.
func (w *worker) startCreated(ctx context.Context, pod *v1.Pod, c *v1.Container, ci *containerInfo, again requeue) {
	start := w.stepStart()
	err := w.m.rt.StartContainer(ctx, ci.c.Id)
	w.step(StepStart, c.Name, "", start, err)
	if err != nil {
		if rmErr := w.m.rt.RemoveContainer(ctx, ci.c.Id); rmErr != nil && !errdefs.IsNotFound(rmErr) {
			w.log.WithError(rmErr).WithField("container", c.Name).Warn("removing a container that failed to start failed")
		}
		w.waiting[c.Name] = &v1.ContainerStateWaiting{Reason: reasonRunContainerError, Message: err.Error()}
		again(w.backoff.Failed(containerBackoffKey(c.Name)))
		return
	}
	delete(w.waiting, c.Name)
	w.log.WithFields(logrus.Fields{"container": c.Name, "containerID": ci.c.Id}).Info("container started")
}

// removeOldInstances keeps only the instance just replaced (the new lastState and the logs
// `previous` serves) and removes older exited ones of the same container, with their log
// files: the runtime leaves those to the agent, as it does to the kubelet.
func (w *worker) removeOldInstances(ctx context.Context, pod *v1.Pod, st *podState, name string) {
	n := 0
	for _, ci := range st.containers {
		if ci.name() != name {
			continue
		}
		n++
		if n == 1 || ci.state() == runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		log := w.log.WithFields(logrus.Fields{"container": name, "containerID": ci.c.Id})
		if err := w.m.rt.RemoveContainer(ctx, ci.c.Id); err != nil && !errdefs.IsNotFound(err) {
			log.WithError(err).Warn("removing an old container instance failed")
			continue
		}
		delete(w.kills, ci.c.Id)
		delete(w.messages, ci.c.Id)
		logFile := filepath.Join(w.m.podLogDir(pod), name, fmt.Sprintf("%d.log", ci.restartCount()))
		if err := os.Remove(logFile); err != nil && !os.IsNotExist(err) {
			log.WithError(err).Warn("removing an old container log failed")
		}
	}
}

// containerConfig builds the CRI config for one instance of c.
func (w *worker) containerConfig(pod *v1.Pod, c *v1.Container, attempt uint32, imageRef string, st *podState) (*runtimeapi.ContainerConfig, error) {
	podIPs := w.podIPs
	if st.sandboxStatus != nil {
		podIPs = sandboxIPs(st.sandboxStatus)
	}
	if pod.Spec.HostNetwork && w.m.cfg.NodeIP != "" {
		podIPs = []string{w.m.cfg.NodeIP}
	}
	var mounts []*runtimeapi.Mount
	if len(c.VolumeMounts) > 0 {
		if w.m.cfg.Volumes == nil {
			return nil, fmt.Errorf("container %q: volumeMounts[0] (volume %q): this agent has no volume support configured", c.Name, c.VolumeMounts[0].Name)
		}
		var err error
		if mounts, err = w.m.cfg.Volumes.Mounts(pod, c, w.volumePaths); err != nil {
			return nil, fmt.Errorf("container %q: %w", c.Name, err)
		}
	}
	if tm, err := w.terminationMessageMount(pod, c); err != nil {
		return nil, fmt.Errorf("container %q: %w", c.Name, err)
	} else if tm != nil {
		mounts = append(mounts, tm)
	}
	env, err := makeEnv(pod, c, podIPs, w.m.cfg.NodeIP, w.m.cfg.Configs, w.m.cfg.Allocatable)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, kv := range env {
		vars[kv.Key] = string(kv.Value)
	}
	hash, err := containerHash(c)
	if err != nil {
		return nil, err
	}
	annotations := map[string]string{
		cri.AnnotationContainerHash:             hash,
		cri.AnnotationRestartCount:              strconv.FormatUint(uint64(attempt), 10),
		cri.AnnotationTerminationMessagePath:    c.TerminationMessagePath,
		cri.AnnotationTerminationMessagePolicy:  string(c.TerminationMessagePolicy),
		cri.AnnotationPodTerminationGracePeriod: strconv.FormatInt(gracePeriod(pod), 10),
	}
	if len(c.Ports) > 0 {
		if b, err := json.Marshal(c.Ports); err == nil {
			annotations[cri.AnnotationContainerPorts] = string(b)
		}
	}
	labels := w.m.ownLabels()
	labels[cri.LabelPodName] = pod.Name
	labels[cri.LabelPodNamespace] = pod.Namespace
	labels[cri.LabelPodUID] = string(pod.UID)
	labels[cri.LabelContainerName] = c.Name

	return &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:       &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: c.Image},
		Command:     expandAll(c.Command, vars),
		Args:        expandAll(c.Args, vars),
		WorkingDir:  c.WorkingDir,
		Envs:        env,
		Mounts:      mounts,
		Labels:      labels,
		Annotations: annotations,
		LogPath:     filepath.Join(c.Name, fmt.Sprintf("%d.log", attempt)),
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.TTY,
		StopSignal:  stopSignal(c),
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       linuxResources(c),
			SecurityContext: containerSecurityContext(pod, c),
		},
	}, nil
}

// containerHash identifies the spec an instance was created from (the kubelet's hash label).
func containerHash(c *v1.Container) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("hash container %q: %w", c.Name, err)
	}
	h := fnv.New32a()
	h.Write(b)
	return strconv.FormatUint(uint64(h.Sum32()), 16), nil
}
