package podmanager

import (
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
)

// buildStatus computes the pod's status from what the runtime holds and what the worker
// remembers (why a container is waiting). Condition transition times carry over from the
// last status while a condition keeps its value.
func (w *worker) buildStatus(pod *v1.Pod, st *podState) v1.PodStatus {
	now := metav1.NewTime(w.m.cfg.Clock.Now())
	var prev *v1.PodStatus
	if p, _, ok := w.m.status.Get(pod.UID); ok {
		prev = &p.Status
	}
	s := v1.PodStatus{StartTime: w.startTime, QOSClass: qosClass(pod)}
	if w.m.cfg.NodeIP != "" {
		s.HostIP = w.m.cfg.NodeIP
		s.HostIPs = []v1.HostIP{{IP: w.m.cfg.NodeIP}}
	}
	ips := w.podIPs
	if pod.Spec.HostNetwork && w.m.cfg.NodeIP != "" {
		ips = []string{w.m.cfg.NodeIP}
	}
	if len(ips) > 0 {
		s.PodIP = ips[0]
		for _, ip := range ips {
			s.PodIPs = append(s.PodIPs, v1.PodIP{IP: ip})
		}
	}

	initDone := true
	var pendingInit []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := w.containerStatus(pod, c, st, reasonPodInitializing)
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 && !isSidecar(c) {
			cs.Ready = true // the kubelet's convention: an init container that did its job is ready
		}
		s.InitContainerStatuses = append(s.InitContainerStatuses, cs)
		if isSidecar(c) {
			// A sidecar has done its part of initialization once it has run.
			if !st.latest(c.Name).hasStarted() {
				initDone = false
				pendingInit = append(pendingInit, c.Name)
			}
			continue
		}
		if t := cs.State.Terminated; t == nil || t.ExitCode != 0 {
			initDone = false
			pendingInit = append(pendingInit, c.Name)
		}
	}
	waitReason := reasonContainerCreating
	if !initDone {
		waitReason = reasonPodInitializing
	}
	var unready, why []string
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := w.containerStatus(pod, c, st, waitReason)
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
		if !cs.Ready {
			unready = append(unready, c.Name)
			if msg := w.readinessFailure(c, st); msg != "" {
				why = append(why, fmt.Sprintf("%s: Readiness probe failed: %s", c.Name, msg))
			}
		}
	}
	// Until events exist, the conditions are where a user sees why a container is not ready.
	notReady := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if len(why) > 0 {
		notReady += "; " + strings.Join(why, "; ")
	}
	s.Phase = podPhase(pod, s.InitContainerStatuses, s.ContainerStatuses, initDone)
	if w.deadlineExceeded {
		s.Phase, s.Reason, s.Message = v1.PodFailed, reasonDeadlineExceeded, messageDeadlineExceeded
	}
	if w.rejection != "" {
		s = w.rejectedStatus(s)
	}

	sandboxReady := st.readySandbox() != nil
	conds := []v1.PodCondition{
		{Type: v1.PodScheduled, Status: v1.ConditionTrue},
		boolCondition(v1.PodReadyToStartContainers, sandboxReady, "", ""),
		boolCondition(v1.PodInitialized, initDone, "ContainersNotInitialized",
			fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(pendingInit, " "))),
		boolCondition(v1.ContainersReady, len(unready) == 0, "ContainersNotReady", notReady),
		boolCondition(v1.PodReady, len(unready) == 0, "ContainersNotReady", notReady),
	}
	switch {
	case w.volumesBlocked() != "":
		conds[1].Status, conds[1].Reason, conds[1].Message = v1.ConditionFalse, "FailedMount", w.volumesBlocked()
	case !sandboxReady && w.sandboxErr != "":
		reason := w.sandboxReason
		if reason == "" {
			reason = "FailedCreatePodSandBox"
		}
		conds[1].Reason, conds[1].Message = reason, w.sandboxErr
	}
	if len(unready) == 0 {
		if msg := readinessGatesMessage(pod); msg != "" {
			conds[4].Status, conds[4].Reason, conds[4].Message = v1.ConditionFalse, "ReadinessGatesNotReady", msg
		}
	}
	if s.Phase == v1.PodSucceeded || s.Phase == v1.PodFailed {
		// A finished pod is not ready, whatever its containers said last.
		for i := range conds[3:] {
			conds[3+i].Status, conds[3+i].Reason, conds[3+i].Message = v1.ConditionFalse, "PodCompleted", ""
		}
	}
	// The generation this status was computed for, so a client can tell it saw its latest
	// spec change (PodObservedGenerationTracking).
	s.ObservedGeneration = pod.Generation
	for i := range conds {
		conds[i].ObservedGeneration = pod.Generation
		conds[i].LastTransitionTime = now
		if prev != nil {
			for _, pc := range prev.Conditions {
				if pc.Type == conds[i].Type && pc.Status == conds[i].Status {
					conds[i].LastTransitionTime = pc.LastTransitionTime
				}
			}
		}
	}
	s.Conditions = conds
	return s
}

func boolCondition(t v1.PodConditionType, ok bool, reason, message string) v1.PodCondition {
	if ok {
		return v1.PodCondition{Type: t, Status: v1.ConditionTrue}
	}
	return v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: message}
}

// containerStatus reports c from its newest instance, or from why it is waiting.
func (w *worker) containerStatus(pod *v1.Pod, c *v1.Container, st *podState, waitReason string) v1.ContainerStatus {
	cs := v1.ContainerStatus{Name: c.Name, Image: c.Image, Started: new(bool)}
	latest := st.latest(c.Name)
	waiting := w.waiting[c.Name]
	if latest == nil || latest.status == nil {
		if waiting == nil {
			waiting = &v1.ContainerStateWaiting{Reason: waitReason, Message: w.volumesBlocked()}
		}
		cs.State.Waiting = waiting
		return cs
	}
	ls := latest.status
	cs.ContainerID = w.m.cfg.RuntimeName + "://" + latest.c.Id
	cs.ImageID = ls.ImageRef
	cs.RestartCount = latest.restartCount()
	if prev := st.previous(c.Name); prev != nil && prev.status != nil &&
		prev.status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		cs.LastTerminationState.Terminated = w.terminated(prev.c.Id, prev.status)
	}
	switch ls.State {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		cs.State.Running = &v1.ContainerStateRunning{StartedAt: nanoTime(ls.StartedAt)}
		*cs.Started, cs.Ready = w.probeStatus(c, latest.c.Id)
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		term := w.terminated(latest.c.Id, ls)
		if waiting != nil && (isSidecar(c) || shouldRestart(pod.Spec.RestartPolicy, ls.ExitCode)) {
			cs.State.Waiting = waiting
			cs.LastTerminationState = v1.ContainerState{Terminated: term}
		} else {
			cs.State.Terminated = term
		}
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: reasonContainerCreating}
	default:
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: "ContainerStatusUnknown", Message: ls.Message}
	}
	return cs
}

func (w *worker) terminated(id string, s *runtimeapi.ContainerStatus) *v1.ContainerStateTerminated {
	reason := s.Reason
	if reason == "" {
		reason = "Error"
		if s.ExitCode == 0 {
			reason = "Completed"
		}
	}
	message := w.terminationMessage(s)
	if message == "" {
		message = s.Message
	}
	if message == "" {
		message = w.kills[id].note
	}
	return &v1.ContainerStateTerminated{
		ExitCode:    s.ExitCode,
		Reason:      reason,
		Message:     message,
		StartedAt:   nanoTime(s.StartedAt),
		FinishedAt:  nanoTime(s.FinishedAt),
		ContainerID: w.m.cfg.RuntimeName + "://" + id,
	}
}

func nanoTime(ns int64) metav1.Time {
	if ns == 0 {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(0, ns))
}

// podPhase follows the kubelet's rules: Pending until init containers are done and every
// container has run; Running while any runs or will be restarted; for OnFailure and Never
// pods whose containers all stopped, Succeeded if all exited 0, else Failed (Never) or
// Running (OnFailure restarts the failed ones).
func podPhase(pod *v1.Pod, initStatuses, statuses []v1.ContainerStatus, initDone bool) v1.PodPhase {
	if !initDone {
		if pod.Spec.RestartPolicy == v1.RestartPolicyNever {
			for i, cs := range initStatuses {
				if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && !isSidecar(&pod.Spec.InitContainers[i]) {
					return v1.PodFailed
				}
			}
		}
		return v1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return v1.PodPending
	case running > 0:
		return v1.PodRunning
	case stopped > 0:
		switch pod.Spec.RestartPolicy {
		case v1.RestartPolicyAlways, "":
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		if pod.Spec.RestartPolicy == v1.RestartPolicyNever {
			return v1.PodFailed
		}
		return v1.PodRunning
	default:
		return v1.PodPending
	}
}

// qosClass follows Kubernetes: Guaranteed when every container sets equal CPU and memory
// requests and limits, BestEffort when none sets any, Burstable otherwise.
func qosClass(pod *v1.Pod) v1.PodQOSClass {
	all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	any, guaranteed := false, true
	for _, c := range all {
		for _, r := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq || hasLim {
				any = true
			}
			if !hasLim || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return v1.PodQOSBestEffort
	case guaranteed:
		return v1.PodQOSGuaranteed
	default:
		return v1.PodQOSBurstable
	}
}

// readinessFailure is the last failure message of the running container's readiness probe.
func (w *worker) readinessFailure(c *v1.Container, st *podState) string {
	l := st.latest(c.Name)
	if w.m.cfg.Prober == nil || c.ReadinessProbe == nil || l == nil || l.state() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return ""
	}
	if res, msg := w.m.cfg.Prober.Result(l.c.Id, prober.Readiness); res == prober.Failure {
		return msg
	}
	return ""
}
