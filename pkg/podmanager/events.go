package podmanager

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
)

// Recorder records Kubernetes events about a pod, for `kubectl describe pod`. The API source
// implements it; without one (no control plane) events are only logged by the code that
// raises them. Implementations rate-limit and must not block.
type Recorder interface {
	Event(pod *v1.Pod, eventType, reason, message string)
}

// Event reasons as the kubelet spells them.
const (
	eventPulling         = "Pulling"
	eventPulled          = "Pulled"
	eventCreated         = "Created"
	eventStarted         = "Started"
	eventKilling         = "Killing"
	eventBackOff         = "BackOff"
	eventUnhealthy       = "Unhealthy"
	eventFailed          = "Failed"
	eventFailedMount     = "FailedMount"
	eventSandboxFailed   = "FailedCreatePodSandBox"
	eventSandboxChanged  = "SandboxChanged"
	eventNeverPull       = "ErrImageNeverPull"
	eventPostStartFailed = "FailedPostStartHook"
)

// event raises an event and keeps it in the pod's timeline, which is where `nodeagent
// describe` finds it without a control plane.
func (w *worker) event(pod *v1.Pod, eventType, reason, message string) {
	w.tl.addEvent(eventType, reason, message, w.m.cfg.Clock.Now())
	if r := w.m.cfg.Events; r != nil {
		r.Event(pod, eventType, reason, message)
	}
}

// setWaiting records why container name is not running and raises the event the kubelet
// raises when a container enters that state. Only a change of reason raises one: the sync
// loop sets the same state on every pass while it lasts.
func (w *worker) setWaiting(pod *v1.Pod, name string, waiting *v1.ContainerStateWaiting) {
	prev := w.waiting[name]
	w.waiting[name] = waiting
	if prev != nil && prev.Reason == waiting.Reason {
		return
	}
	switch waiting.Reason {
	case reasonErrImagePull:
		w.event(pod, v1.EventTypeWarning, eventFailed, waiting.Message)
	case reasonImagePullBackOff:
		w.event(pod, v1.EventTypeNormal, eventBackOff, waiting.Message)
	case reasonErrImageNeverPull:
		w.event(pod, v1.EventTypeWarning, eventNeverPull, waiting.Message)
	case reasonCrashLoopBackOff:
		w.event(pod, v1.EventTypeWarning, eventBackOff, fmt.Sprintf("Back-off restarting failed container %s in pod %s", name, pod.Name))
	case reasonCreateConfigError, reasonCreateContainerError, reasonRunContainerError:
		w.event(pod, v1.EventTypeWarning, eventFailed, "Error: "+waiting.Message)
	}
}
