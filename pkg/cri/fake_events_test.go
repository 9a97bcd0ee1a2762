package cri

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventFeed is the test's handle on a fake event stream: it counts
// subscriptions, remembers what they asked for, and lets the test send
// events into the current subscription or end it with an error.
type eventFeed[T any] struct {
	mu        sync.Mutex
	subs      int        // guarded by mu
	filters   []string   // guarded by mu; of the last subscription
	namespace []string   // guarded by mu; containerd-namespace metadata of the last one
	send      chan T     // the test sends; the current subscription forwards
	end       chan error // the test sends; the current subscription returns it
}

func newEventFeed[T any]() *eventFeed[T] {
	return &eventFeed[T]{send: make(chan T), end: make(chan error)}
}

func (f *eventFeed[T]) subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs
}

// serve is the body of a fake streaming handler.
func (f *eventFeed[T]) serve(ctx context.Context, filters []string, send func(T) error) error {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.subs++
	f.filters = filters
	f.namespace = md.Get(namespaceHeader)
	f.mu.Unlock()
	for {
		select {
		case ev := <-f.send:
			if err := send(ev); err != nil {
				return err
			}
		case err := <-f.end:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// push hands ev to the current subscription (waiting for one if there is
// none yet).
func (f *eventFeed[T]) push(t *testing.T, ev T) {
	t.Helper()
	select {
	case f.send <- ev:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a subscription to send an event into")
	}
}

// breakWith ends the current subscription with err (a gRPC status error).
func (f *eventFeed[T]) breakWith(t *testing.T, err error) {
	t.Helper()
	select {
	case f.end <- err:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a subscription to end")
	}
}

// fakeEventsCRI is a CRI runtime that answers Version and streams
// GetContainerEvents from its feed, or, with unimplemented, answers that
// stream with Unimplemented as containerd 1.7 does.
type fakeEventsCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	unimplemented bool
	feed          *eventFeed[*runtimeapi.ContainerEventResponse]
}

func newFakeEventsCRI() *fakeEventsCRI {
	return &fakeEventsCRI{feed: newEventFeed[*runtimeapi.ContainerEventResponse]()}
}

func (f *fakeEventsCRI) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "fake", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeEventsCRI) GetContainerEvents(req *runtimeapi.GetEventsRequest, srv grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	if f.unimplemented {
		return f.UnimplementedRuntimeServiceServer.GetContainerEvents(req, srv)
	}
	return f.feed.serve(srv.Context(), nil, srv.Send)
}

// fakeContainerd is containerd's event service (and the version service
// the stream is confirmed with), streaming envelopes from its feed without
// filtering them: the client must filter too.
type fakeContainerd struct {
	eventsapi.UnimplementedEventsServer
	versionapi.UnimplementedVersionServer
	feed *eventFeed[*types.Envelope]
}

func newFakeContainerd() *fakeContainerd {
	return &fakeContainerd{feed: newEventFeed[*types.Envelope]()}
}

func (f *fakeContainerd) Subscribe(req *eventsapi.SubscribeRequest, srv eventsapi.Events_SubscribeServer) error {
	return f.feed.serve(srv.Context(), req.GetFilters(), srv.Send)
}

func (f *fakeContainerd) Version(context.Context, *emptypb.Empty) (*versionapi.VersionResponse, error) {
	return &versionapi.VersionResponse{Version: "fake"}, nil
}

// serveEvents serves the non-nil fakes on path until the returned stop is
// called or the test ends.
func serveEvents(t *testing.T, path string, cri *fakeEventsCRI, ctrd *fakeContainerd) (stop func()) {
	t.Helper()
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	srv := grpc.NewServer()
	if cri != nil {
		runtimeapi.RegisterRuntimeServiceServer(srv, cri)
	}
	if ctrd != nil {
		eventsapi.RegisterEventsServer(srv, ctrd)
		versionapi.RegisterVersionServer(srv, ctrd)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}
