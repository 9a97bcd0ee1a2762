package controlplane

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
)

// EventComponent is the source component of the agent's events (the kubelet writes
// "kubelet"; kubectl describe shows it in the From column).
const EventComponent = "nodeagent"

// EventRecorder writes pod events to the API server. It uses client-go's broadcaster, which
// aggregates similar events and rate-limits each object's (a burst of 25, then one per 5
// minutes per kind of event), and never blocks the caller: when the API server is away,
// events are dropped after client-go's few retries rather than queued without bound.
type EventRecorder struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// NewEventRecorder starts recording to the API server for node; Stop ends it.
func NewEventRecorder(client kubeclient.Interface, node string, log *logrus.Entry) *EventRecorder {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(eventSink{client})
	b.StartEventWatcher(func(e *v1.Event) {
		log.WithFields(logrus.Fields{"object": e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name, "reason": e.Reason, "type": e.Type}).
			Debug(e.Message)
	})
	return &EventRecorder{
		broadcaster: b,
		recorder:    b.NewRecorder(kubeclient.Scheme, v1.EventSource{Component: EventComponent, Host: node}),
	}
}

// Event records an event about pod. A static pod's events name the static pod, as the
// kubelet's do.
func (r *EventRecorder) Event(pod *v1.Pod, eventType, reason, message string) {
	ref := &v1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion,
	}
	r.recorder.Event(ref, eventType, reason, message)
}

// Stop stops the broadcaster; events still queued are dropped.
func (r *EventRecorder) Stop() { r.broadcaster.Shutdown() }

// eventSink writes the broadcaster's events in the namespace of each event, as client-go's
// EventSinkImpl does. The broadcaster's interface has no context, so each call gets its own
// bounded one: an API server that accepts and never answers must not stall the broadcaster
// (it retries a failed write a few times, then drops the event).
type eventSink struct{ client kubeclient.Interface }

// eventWriteTimeout bounds one event write.
const eventWriteTimeout = 30 * time.Second

func (s eventSink) Create(e *v1.Event) (*v1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
	defer cancel()
	return s.client.CoreV1().Events(e.Namespace).Create(ctx, e, metav1.CreateOptions{})
}

func (s eventSink) Update(e *v1.Event) (*v1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
	defer cancel()
	return s.client.CoreV1().Events(e.Namespace).Update(ctx, e, metav1.UpdateOptions{})
}

func (s eventSink) Patch(e *v1.Event, data []byte) (*v1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
	defer cancel()
	return s.client.CoreV1().Events(e.Namespace).Patch(ctx, e.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
}
