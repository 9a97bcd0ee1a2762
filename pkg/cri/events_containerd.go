package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The containerd path speaks containerd's own gRPC API through its small API
// module (generated clients and event types), not containerd's Go client,
// which would link most of containerd into the agent.
//
// Its /tasks/exit arrives 1-15ms after an exit, against 25-120ms for CRI's
// STOPPED, because containerd publishes it as soon as the shim reports the
// exit, while the CRI plugin first deletes the task. The flip side: for
// those 25-120ms CRI's ContainerStatus still says RUNNING, so a consumer
// that checks ContainerStatus right after a "stopped" from this path must
// expect that and look again shortly (the "deleted" that follows comes
// before CRI's status update too).

const (
	// namespaceHeader is the gRPC metadata key containerd reads the
	// namespace from.
	namespaceHeader = "containerd-namespace"

	topicTaskCreate = "/tasks/create"
	topicTaskStart  = "/tasks/start"
	topicTaskExit   = "/tasks/exit"
	topicTaskDelete = "/tasks/delete"
)

// containerdSource is containerd's event service, filtered to the task
// life-cycle topics of one namespace.
type containerdSource struct {
	address   string // "unix:///abs/path", for logs and errors
	namespace string
	conn      *grpc.ClientConn
	own       bool // conn was dialled for this source; close closes it
	events    eventsapi.EventsClient
	version   versionapi.VersionClient
}

// newContainerdSource returns the containerd source for address (empty:
// the CRI endpoint, whose connection it then shares).
func (c *Client) newContainerdSource(address, namespace string) (*containerdSource, error) {
	s := &containerdSource{address: c.endpoint, namespace: namespace, conn: c.conn}
	if address != "" {
		path, err := socketPath(address)
		if err != nil {
			return nil, fmt.Errorf("runtime events: containerd address: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if path != c.path {
			conn, err := dialUnix(path)
			if err != nil {
				return nil, fmt.Errorf("runtime events: containerd address %s: %w", address, err)
			}
			s.address, s.conn, s.own = "unix://"+path, conn, true
		}
	}
	s.events = eventsapi.NewEventsClient(s.conn)
	s.version = versionapi.NewVersionClient(s.conn)
	return s, nil
}

func (s *containerdSource) name() string { return SourceContainerd }

// filters asks containerd for exactly the topics we report, in our
// namespace (filters in one string are ANDed, the strings ORed). recv still
// checks both: the filter is an optimisation, not the contract.
func (s *containerdSource) filters() []string {
	var f []string
	for _, topic := range []string{topicTaskCreate, topicTaskStart, topicTaskExit, topicTaskDelete} {
		f = append(f, fmt.Sprintf("namespace==%q,topic==%q", s.namespace, topic))
	}
	return f
}

func (s *containerdSource) subscribe(ctx context.Context) (eventStream, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, namespaceHeader, s.namespace)
	stream, err := s.events.Subscribe(ctx, &eventsapi.SubscribeRequest{Filters: s.filters()})
	if err != nil {
		return nil, s.translate("events Subscribe", err)
	}
	return &containerdStream{src: s, stream: stream}, nil
}

func (s *containerdSource) confirm(ctx context.Context) error {
	_, err := s.version.Version(ctx, &emptypb.Empty{})
	if err != nil {
		return s.translate("Version", err)
	}
	return nil
}

func (s *containerdSource) close() error {
	if s.own {
		return s.conn.Close()
	}
	return nil
}

// translate is this source's gRPC edge, as translate in errors.go is the
// CRI one.
func (s *containerdSource) translate(op string, err error) error {
	return fmt.Errorf("containerd %s on %s: %w", op, s.address, errgrpc.ToNative(err))
}

type containerdStream struct {
	src    *containerdSource
	stream eventsapi.Events_SubscribeClient
}

func (s *containerdStream) recv() (ContainerEvent, bool, error) {
	env, err := s.stream.Recv()
	if errors.Is(err, io.EOF) {
		return ContainerEvent{}, false, fmt.Errorf("containerd events on %s: %w", s.src.address, errStreamEnded)
	}
	if err != nil {
		return ContainerEvent{}, false, s.src.translate("events Subscribe", err)
	}
	ev, ok := containerdEvent(env, s.src.namespace)
	return ev, ok, nil
}

// containerdEvent translates one envelope. Only the tasks of CRI containers
// and sandboxes in namespace are reported; their task ID is the container
// ID. An exec'd process (a probe, `crictl exec`) has its own exit and delete
// events, with ID set to the exec ID: those say nothing about the container
// and are dropped. A payload that does not decode is dropped too: the relist
// still finds whatever it was about.
func containerdEvent(env *types.Envelope, namespace string) (ContainerEvent, bool) {
	if env.GetNamespace() != namespace || env.GetEvent() == nil {
		return ContainerEvent{}, false
	}
	payload, err := typeurl.UnmarshalAny(env.GetEvent())
	if err != nil {
		return ContainerEvent{}, false
	}
	ev := ContainerEvent{Source: SourceContainerd, Time: timeOf(env.GetTimestamp())}
	switch e := payload.(type) {
	case *apievents.TaskCreate:
		ev.ContainerID, ev.Type = e.GetContainerID(), ContainerCreated
	case *apievents.TaskStart:
		ev.ContainerID, ev.Type = e.GetContainerID(), ContainerStarted
	case *apievents.TaskExit:
		if !isInitProcess(e.GetID(), e.GetContainerID()) {
			return ContainerEvent{}, false
		}
		ev.ContainerID, ev.Type = e.GetContainerID(), ContainerStopped
		if t := timeOf(e.GetExitedAt()); !t.IsZero() {
			ev.Time = t
		}
	case *apievents.TaskDelete:
		if !isInitProcess(e.GetID(), e.GetContainerID()) {
			return ContainerEvent{}, false
		}
		ev.ContainerID, ev.Type = e.GetContainerID(), ContainerDeleted
	default:
		return ContainerEvent{}, false
	}
	if ev.ContainerID == "" {
		return ContainerEvent{}, false
	}
	return ev, true
}

// isInitProcess reports whether a task event's process ID names the
// container's own process: the init process has the container's ID, or
// none at all.
func isInitProcess(id, containerID string) bool {
	return id == "" || id == containerID
}

// timeOf is ts as a time.Time, zero when ts is absent or invalid.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil || !ts.IsValid() || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return time.Time{}
	}
	return ts.AsTime()
}
