package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criSource is CRI GetContainerEvents on the client's own connection.
//
// containerd 2.x sends CREATED/STARTED/STOPPED/DELETED for containers and
// for sandboxes (ContainerId is then the sandbox ID), each with the
// sandbox's status. STOPPED is sent only after the task is deleted and the
// CRI status updated (so ContainerStatus already says EXITED when it
// arrives), 25-120ms after the exit; containerd's own /tasks/exit is faster
// (see events_containerd.go). CreatedAt is when containerd built the event,
// not the exit time.
//
// containerd 2.x keeps the events it had no subscriber for (up to 5
// minutes) and replays them to the next subscriber: after a
// (re)subscription, old events come first. They are hints like any other.
type criSource struct {
	c *Client
}

func (s *criSource) name() string { return SourceCRI }

func (s *criSource) subscribe(ctx context.Context) (eventStream, error) {
	stream, err := s.c.runtime.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		return nil, translate("GetContainerEvents", "", err)
	}
	return &criStream{stream: stream}, nil
}

func (s *criSource) confirm(ctx context.Context) error {
	_, err := s.c.runtime.Version(ctx, &runtimeapi.VersionRequest{Version: wantAPIVersion})
	return translate("Version", "", err)
}

// close does nothing: the connection is the Client's.
func (s *criSource) close() error { return nil }

type criStream struct {
	stream grpc.ServerStreamingClient[runtimeapi.ContainerEventResponse]
}

func (s *criStream) recv() (ContainerEvent, bool, error) {
	resp, err := s.stream.Recv()
	if errors.Is(err, io.EOF) {
		return ContainerEvent{}, false, fmt.Errorf("cri GetContainerEvents: %w", errStreamEnded)
	}
	if err != nil {
		return ContainerEvent{}, false, translate("GetContainerEvents", "", err)
	}
	ev, ok := criEvent(resp)
	return ev, ok, nil
}

// criEventTypes maps CRI event types to ours; a type a newer runtime may
// add is not reported.
var criEventTypes = map[runtimeapi.ContainerEventType]ContainerEventType{
	runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT: ContainerCreated,
	runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT: ContainerStarted,
	runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT: ContainerStopped,
	runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT: ContainerDeleted,
}

// criEvent translates one CRI event. PodUID comes from the sandbox's labels
// only: an object nodeagent created always has LabelPodUID, and for others
// the consumer has nothing to route by anyway.
func criEvent(resp *runtimeapi.ContainerEventResponse) (ContainerEvent, bool) {
	typ, ok := criEventTypes[resp.GetContainerEventType()]
	if !ok || resp.GetContainerId() == "" {
		return ContainerEvent{}, false
	}
	ev := ContainerEvent{
		ContainerID:  resp.GetContainerId(),
		PodSandboxID: resp.GetPodSandboxStatus().GetId(),
		PodUID:       resp.GetPodSandboxStatus().GetLabels()[LabelPodUID],
		Type:         typ,
		Source:       SourceCRI,
	}
	if ns := resp.GetCreatedAt(); ns != 0 {
		ev.Time = time.Unix(0, ns)
	}
	return ev, true
}
