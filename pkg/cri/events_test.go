package cri

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// eventsRun is one RunEvents running in the background.
type eventsRun struct {
	hook   *logtest.Hook
	events chan ContainerEvent
	done   chan struct{}
	err    error

	mu      sync.Mutex
	resyncs []int // guarded by mu; per Resync call, the value of onResync then
}

// startEvents runs RunEvents on c with cfg's Mode, ContainerdAddress and
// Namespace; Handler, Resync and Log are the run's. onResync, if not nil,
// is sampled at each Resync (to tell what had happened before it).
func startEvents(ctx context.Context, t *testing.T, c *Client, cfg EventsConfig, onResync func(*eventsRun) int) *eventsRun {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	r := &eventsRun{hook: hook, events: make(chan ContainerEvent, 100), done: make(chan struct{})}
	cfg.Log = logrus.NewEntry(logger)
	cfg.Handler = func(ev ContainerEvent) { r.events <- ev }
	cfg.Resync = func() {
		n := 0
		if onResync != nil {
			n = onResync(r)
		}
		r.mu.Lock()
		r.resyncs = append(r.resyncs, n)
		r.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		r.err = c.RunEvents(ctx, cfg)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func (r *eventsRun) resyncCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.resyncs)
}

// next returns the next event handed to Handler.
func (r *eventsRun) next(t *testing.T) ContainerEvent {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for an event")
		return ContainerEvent{}
	}
}

// finished waits up to 5s for RunEvents to return.
func (r *eventsRun) finished(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunEvents did not return within 5s")
	}
}

func (r *eventsRun) count(level logrus.Level, msg string) int {
	n := 0
	for _, e := range r.hook.AllEntries() {
		if e.Level == level && e.Message == msg {
			n++
		}
	}
	return n
}

const (
	msgDown        = "container event stream down; resubscribing with backoff"
	msgEstablished = "container event stream established"
	msgReUp        = "container event stream re-established"
	msgFallback    = "runtime does not implement CRI container events; using containerd's event service"
)

func TestParseEventsModeAcceptsTheThreeModesAndNamesThemOtherwise(t *testing.T) {
	for _, s := range []string{"auto", "cri", "containerd"} {
		if m, err := ParseEventsMode(s); err != nil || string(m) != s {
			t.Errorf("ParseEventsMode(%q) = %q, %v; want %q", s, m, err, s)
		}
	}
	for _, s := range []string{"", "CRI", "polling"} {
		_, err := ParseEventsMode(s)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `want "auto", "cri" or "containerd"`) {
			t.Errorf("ParseEventsMode(%q) error = %v, want an invalid-argument error naming the allowed values", s, err)
		}
	}
}

func TestStreamBackoffDoublesCapsAndResetsAfterAHealthyStream(t *testing.T) {
	b := streamBackoff{initial: 500 * time.Millisecond, max: 30 * time.Second, resetAfter: 30 * time.Second}
	steps := []struct {
		lived time.Duration // of the stream that just ended
		want  time.Duration
	}{
		{0, 500 * time.Millisecond},
		{0, time.Second},
		{29 * time.Second, 2 * time.Second}, // short-lived: keeps growing
		{0, 4 * time.Second},
		{0, 8 * time.Second},
		{0, 16 * time.Second},
		{0, 30 * time.Second},
		{0, 30 * time.Second},
		{30 * time.Second, 500 * time.Millisecond}, // lived long enough: start over
		{0, time.Second},
	}
	for i, s := range steps {
		if got := b.after(s.lived); got != s.want {
			t.Fatalf("step %d (lived %v): backoff %v, want %v", i+1, s.lived, got, s.want)
		}
	}
}

func TestRunEventsRejectsAnInvalidConfig(t *testing.T) {
	c := newTestClient(t, testSocketPath(t), Options{})
	handler := func(ContainerEvent) {}
	tests := []struct {
		name string
		cfg  EventsConfig
	}{
		{name: "no handler", cfg: EventsConfig{}},
		{name: "unknown mode", cfg: EventsConfig{Mode: "poll", Handler: handler}},
		{name: "relative containerd address", cfg: EventsConfig{Mode: EventsContainerd, ContainerdAddress: "run/containerd.sock", Handler: handler}},
		{name: "tcp containerd address in auto mode", cfg: EventsConfig{ContainerdAddress: "tcp://127.0.0.1:1", Handler: handler}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.RunEvents(context.Background(), tc.cfg)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("RunEvents = %v, want an invalid-argument error", err)
			}
		})
	}
}

func TestCRIEventsReachHandlerInOrderWithPodUIDFromSandboxLabels(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeEventsCRI()
	serveEvents(t, path, f, nil)
	c := newTestClient(t, path, Options{})
	r := startEvents(context.Background(), t, c, EventsConfig{Mode: EventsCRI}, nil)

	sandbox := &runtimeapi.PodSandboxStatus{Id: "sb1", Labels: map[string]string{LabelPodUID: "uid-1"}}
	at := time.Unix(1_700_000_000, 123)
	sent := []*runtimeapi.ContainerEventResponse{
		{ContainerId: "sb1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, CreatedAt: at.UnixNano(), PodSandboxStatus: sandbox},
		{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, CreatedAt: at.UnixNano() + 1, PodSandboxStatus: sandbox},
		{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, CreatedAt: at.UnixNano() + 2, PodSandboxStatus: sandbox},
		{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, CreatedAt: at.UnixNano() + 3, PodSandboxStatus: sandbox},
		{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, CreatedAt: at.UnixNano() + 4},
	}
	want := []ContainerEvent{
		{ContainerID: "sb1", PodSandboxID: "sb1", PodUID: "uid-1", Type: ContainerStarted, Time: at, Source: SourceCRI},
		{ContainerID: "c1", PodSandboxID: "sb1", PodUID: "uid-1", Type: ContainerCreated, Time: at.Add(1), Source: SourceCRI},
		{ContainerID: "c1", PodSandboxID: "sb1", PodUID: "uid-1", Type: ContainerStarted, Time: at.Add(2), Source: SourceCRI},
		{ContainerID: "c1", PodSandboxID: "sb1", PodUID: "uid-1", Type: ContainerStopped, Time: at.Add(3), Source: SourceCRI},
		// containerd may fail to find the sandbox of a deleted container and
		// send no status: no sandbox, no UID.
		{ContainerID: "c1", Type: ContainerDeleted, Time: at.Add(4), Source: SourceCRI},
	}
	for _, ev := range sent {
		f.feed.push(t, ev)
	}
	for i, w := range want {
		got := r.next(t)
		if got != w {
			t.Errorf("event %d = %+v, want %+v", i+1, got, w)
		}
	}
	if n := r.resyncCount(); n != 1 {
		t.Errorf("Resync called %d times, want 1", n)
	}
	if n := r.count(logrus.InfoLevel, msgEstablished); n != 1 {
		t.Errorf("%d %q lines, want 1", n, msgEstablished)
	}
	if n := r.count(logrus.WarnLevel, msgDown); n != 0 {
		t.Errorf("%d warnings for a healthy stream, want none", n)
	}
}

func TestCRIEventTranslation(t *testing.T) {
	tests := []struct {
		name   string
		resp   *runtimeapi.ContainerEventResponse
		want   ContainerEvent
		wantOK bool
	}{
		{
			name: "sandbox without the pod UID label has no PodUID",
			resp: &runtimeapi.ContainerEventResponse{
				ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
				PodSandboxStatus: &runtimeapi.PodSandboxStatus{Id: "sb1", Metadata: &runtimeapi.PodSandboxMetadata{Uid: "u"}},
			},
			want:   ContainerEvent{ContainerID: "c1", PodSandboxID: "sb1", Type: ContainerStopped, Source: SourceCRI},
			wantOK: true,
		},
		{
			name: "an event type this package does not know is not reported",
			resp: &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: 42},
		},
		{
			name: "an event without a container ID is not reported",
			resp: &runtimeapi.ContainerEventResponse{ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := criEvent(tc.resp)
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("criEvent = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestBrokenStreamIsResubscribedWithBackoffAndResyncedAgain(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeEventsCRI()
	serveEvents(t, path, f, nil)
	c := newTestClient(t, path, Options{})
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	c.clock = clk
	r := startEvents(context.Background(), t, c, EventsConfig{Mode: EventsCRI}, nil)

	stopped := func(id string) *runtimeapi.ContainerEventResponse {
		return &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}
	}
	// breakAndExpect breaks the stream and checks the backoff before the
	// next subscription is exactly want.
	breakAndExpect := func(want time.Duration) {
		t.Helper()
		subs := f.feed.subscriptions()
		f.feed.breakWith(t, status.Error(codes.Unavailable, "transport is closing"))
		eventually(t, "RunEvents to back off", clk.HasWaiters)
		clk.Step(want - time.Millisecond)
		if !clk.HasWaiters() || f.feed.subscriptions() != subs {
			t.Fatalf("resubscribed before the %v backoff was over", want)
		}
		clk.Step(time.Millisecond)
		eventually(t, "the stream to be re-established and resynced", func() bool {
			return f.feed.subscriptions() == subs+1 && r.resyncCount() == subs+1
		})
	}

	eventually(t, "the first subscription", func() bool { return r.resyncCount() == 1 })
	f.feed.push(t, stopped("c1"))
	if ev := r.next(t); ev.ContainerID != "c1" {
		t.Fatalf("first event = %+v, want c1's", ev)
	}

	breakAndExpect(500 * time.Millisecond)
	f.feed.push(t, stopped("c2"))
	if ev := r.next(t); ev.ContainerID != "c2" {
		t.Fatalf("event after resubscription = %+v, want c2's", ev)
	}
	// A stream that broke again soon after: the backoff keeps growing.
	breakAndExpect(time.Second)
	// A stream that lived 30s was healthy: the backoff starts over.
	clk.Step(eventsBackoffReset)
	breakAndExpect(500 * time.Millisecond)
	if n := r.count(logrus.InfoLevel, msgReUp); n != 3 {
		t.Errorf("%d %q lines, want 3 (one per recovery)", n, msgReUp)
	}
}

func TestRuntimeDownForLongIsWarnedOnceAndItsRecoveryOnce(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeEventsCRI()
	stop := serveEvents(t, path, f, nil)
	c := newTestClient(t, path, Options{})
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	c.clock = clk
	r := startEvents(context.Background(), t, c, EventsConfig{Mode: EventsCRI}, nil)
	eventually(t, "the first subscription", func() bool { return r.resyncCount() == 1 })

	stop() // the runtime dies: the stream breaks and resubscribing fails
	const retries = 12
	for i := 0; i < retries; i++ {
		eventually(t, "RunEvents to back off", clk.HasWaiters)
		clk.Step(30 * time.Second)
	}
	eventually(t, "RunEvents to back off", clk.HasWaiters)
	if n := r.count(logrus.WarnLevel, msgDown); n != 1 {
		t.Fatalf("%d warnings over %d retries, want exactly 1", n, retries)
	}
	if n := r.count(logrus.DebugLevel, "container event stream still down"); n < retries {
		t.Errorf("%d debug lines, want one per retry (>= %d)", n, retries)
	}

	serveEvents(t, path, f, nil)
	// gRPC's own reconnect backoff runs on the real clock: keep stepping
	// until an attempt gets through.
	eventually(t, "the stream to be re-established", func() bool {
		if clk.HasWaiters() {
			clk.Step(30 * time.Second)
		}
		return r.resyncCount() == 2
	})
	if n := r.count(logrus.InfoLevel, msgReUp); n != 1 {
		t.Errorf("%d %q lines, want 1", n, msgReUp)
	}
	if n := r.count(logrus.WarnLevel, msgDown); n != 1 {
		t.Errorf("%d warnings in all, want 1", n)
	}
}

// envelope wraps a containerd event as the event service sends it.
func envelope(t *testing.T, ns, topic string, at time.Time, ev proto.Message) *types.Envelope {
	t.Helper()
	payload, err := typeurl.MarshalAnyToProto(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &types.Envelope{Timestamp: timestamppb.New(at), Namespace: ns, Topic: topic, Event: payload}
}

func TestAutoModeFallsBackToContainerdEventsWhenCRIIsUnimplemented(t *testing.T) {
	path := testSocketPath(t)
	cri := newFakeEventsCRI()
	cri.unimplemented = true // containerd 1.7
	ctrd := newFakeContainerd()
	serveEvents(t, path, cri, ctrd) // one socket, as containerd serves both
	c := newTestClient(t, path, Options{})
	// Sampled at each Resync: had RunEvents switched to containerd by then?
	switched := func(r *eventsRun) int { return r.count(logrus.InfoLevel, msgFallback) }
	r := startEvents(context.Background(), t, c, EventsConfig{}, switched)

	eventually(t, "the containerd subscription", func() bool { return ctrd.feed.subscriptions() == 1 })
	exitedAt := time.Unix(1_700_000_000, 5000)
	sentAt := exitedAt.Add(3 * time.Millisecond)
	for _, env := range []*types.Envelope{
		// A probe's exec exits: not the container.
		envelope(t, "k8s.io", topicTaskExit, sentAt, &apievents.TaskExit{ContainerID: "c1", ID: "exec-1", ExitStatus: 1, ExitedAt: timestamppb.New(exitedAt)}),
		// Another namespace's container (docker's, say).
		envelope(t, "moby", topicTaskExit, sentAt, &apievents.TaskExit{ContainerID: "d1", ID: "d1", ExitedAt: timestamppb.New(exitedAt)}),
		envelope(t, "k8s.io", topicTaskExit, sentAt, &apievents.TaskExit{ContainerID: "c1", ID: "c1", Pid: 42, ExitStatus: 3, ExitedAt: timestamppb.New(exitedAt)}),
		envelope(t, "k8s.io", topicTaskStart, sentAt, &apievents.TaskStart{ContainerID: "c2", Pid: 43}),
	} {
		ctrd.feed.push(t, env)
	}
	want := []ContainerEvent{
		{ContainerID: "c1", Type: ContainerStopped, Time: exitedAt, Source: SourceContainerd},
		{ContainerID: "c2", Type: ContainerStarted, Time: sentAt, Source: SourceContainerd},
	}
	for i, w := range want {
		if got := r.next(t); !got.Time.Equal(w.Time) || got.ContainerID != w.ContainerID || got.Type != w.Type || got.Source != w.Source ||
			got.PodSandboxID != "" || got.PodUID != "" {
			t.Errorf("event %d = %+v, want %+v", i+1, got, w)
		}
	}

	if n := r.count(logrus.InfoLevel, msgFallback); n != 1 {
		t.Errorf("%d %q lines, want 1", n, msgFallback)
	}
	if n := r.count(logrus.WarnLevel, msgDown); n != 0 {
		t.Errorf("%d warnings: a fallback is not a problem", n)
	}
	r.mu.Lock()
	last := r.resyncs[len(r.resyncs)-1]
	r.mu.Unlock()
	if last != 1 {
		t.Errorf("the last Resync came before the switch to containerd: the containerd subscription was never resynced")
	}
	ctrd.feed.mu.Lock()
	defer ctrd.feed.mu.Unlock()
	if got := ctrd.feed.namespace; len(got) != 1 || got[0] != "k8s.io" {
		t.Errorf("containerd-namespace metadata = %v, want [k8s.io]", got)
	}
	for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"} {
		want := `namespace=="k8s.io",topic=="` + topic + `"`
		found := false
		for _, f := range ctrd.feed.filters {
			found = found || f == want
		}
		if !found {
			t.Errorf("filters %q lack %q", ctrd.feed.filters, want)
		}
	}
}

func TestContainerdModeUsesItsOwnAddressAndNamespace(t *testing.T) {
	criPath, ctrdPath := testSocketPath(t), testSocketPath(t)
	ctrd := newFakeContainerd()
	serveEvents(t, ctrdPath, nil, ctrd) // nothing serves CRI at all
	c := newTestClient(t, criPath, Options{})
	r := startEvents(context.Background(), t, c, EventsConfig{
		Mode: EventsContainerd, ContainerdAddress: "unix://" + ctrdPath, Namespace: "agent",
	}, nil)

	at := time.Unix(1_700_000_100, 0)
	ctrd.feed.push(t, envelope(t, "k8s.io", topicTaskCreate, at, &apievents.TaskCreate{ContainerID: "other"}))
	ctrd.feed.push(t, envelope(t, "agent", topicTaskCreate, at, &apievents.TaskCreate{ContainerID: "c1"}))
	if got := r.next(t); got.ContainerID != "c1" || got.Type != ContainerCreated || got.Source != SourceContainerd {
		t.Errorf("event = %+v, want c1 created from containerd", got)
	}
	if n := r.resyncCount(); n != 1 {
		t.Errorf("Resync called %d times, want 1", n)
	}
}

func TestContainerdEventTranslation(t *testing.T) {
	sent := time.Unix(1_700_000_000, 0)
	exited := sent.Add(-2 * time.Millisecond)
	tests := []struct {
		name   string
		env    func(t *testing.T) *types.Envelope
		want   ContainerEvent
		wantOK bool
	}{
		{
			name: "create",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskCreate, sent, &apievents.TaskCreate{ContainerID: "c1", Pid: 7})
			},
			want: ContainerEvent{ContainerID: "c1", Type: ContainerCreated, Time: sent}, wantOK: true,
		},
		{
			name: "start",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskStart, sent, &apievents.TaskStart{ContainerID: "c1", Pid: 7})
			},
			want: ContainerEvent{ContainerID: "c1", Type: ContainerStarted, Time: sent}, wantOK: true,
		},
		{
			name: "exit of the init process is the container stopping, at ExitedAt",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskExit, sent, &apievents.TaskExit{ContainerID: "c1", ID: "c1", ExitedAt: timestamppb.New(exited)})
			},
			want: ContainerEvent{ContainerID: "c1", Type: ContainerStopped, Time: exited}, wantOK: true,
		},
		{
			name: "exit without a process ID is the container's",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskExit, sent, &apievents.TaskExit{ContainerID: "c1", ExitedAt: timestamppb.New(exited)})
			},
			want: ContainerEvent{ContainerID: "c1", Type: ContainerStopped, Time: exited}, wantOK: true,
		},
		{
			name: "exit without ExitedAt takes the envelope's time",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskExit, sent, &apievents.TaskExit{ContainerID: "c1", ID: "c1"})
			},
			want: ContainerEvent{ContainerID: "c1", Type: ContainerStopped, Time: sent}, wantOK: true,
		},
		{
			name: "exit of an exec'd process is not reported",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskExit, sent, &apievents.TaskExit{ContainerID: "c1", ID: "probe-1", ExitedAt: timestamppb.New(exited)})
			},
		},
		{
			name: "delete",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskDelete, sent, &apievents.TaskDelete{ContainerID: "c1", ExitedAt: timestamppb.New(exited)})
			},
			want: ContainerEvent{ContainerID: "c1", Type: ContainerDeleted, Time: sent}, wantOK: true,
		},
		{
			name: "delete of an exec'd process is not reported",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", topicTaskDelete, sent, &apievents.TaskDelete{ContainerID: "c1", ID: "probe-1"})
			},
		},
		{
			name: "another namespace is not reported",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "default", topicTaskExit, sent, &apievents.TaskExit{ContainerID: "c1", ID: "c1"})
			},
		},
		{
			name: "other task events are not reported",
			env: func(t *testing.T) *types.Envelope {
				return envelope(t, "k8s.io", "/tasks/oom", sent, &apievents.TaskOOM{ContainerID: "c1"})
			},
		},
		{
			name: "an undecodable payload is not reported",
			env: func(t *testing.T) *types.Envelope {
				env := envelope(t, "k8s.io", topicTaskExit, sent, &apievents.TaskExit{ContainerID: "c1"})
				env.Event.TypeUrl = "containerd.events.NoSuchEvent"
				return env
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := containerdEvent(tc.env(t), "k8s.io")
			if tc.wantOK {
				tc.want.Source = SourceContainerd
			}
			if ok != tc.wantOK || got.ContainerID != tc.want.ContainerID || got.Type != tc.want.Type ||
				got.Source != tc.want.Source || !got.Time.Equal(tc.want.Time) {
				t.Errorf("containerdEvent = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestForcedSourceTheRuntimeDoesNotImplementIsAnError(t *testing.T) {
	tests := []struct {
		name  string
		mode  EventsMode
		serve func(t *testing.T, path string)
	}{
		{
			name: "cri mode on a runtime without GetContainerEvents",
			mode: EventsCRI,
			serve: func(t *testing.T, path string) {
				f := newFakeEventsCRI()
				f.unimplemented = true
				serveEvents(t, path, f, nil)
			},
		},
		{
			name:  "containerd mode on a runtime that is not containerd",
			mode:  EventsContainerd,
			serve: func(t *testing.T, path string) { serveEvents(t, path, newFakeEventsCRI(), nil) },
		},
		{
			name: "auto mode when containerd's events are missing too",
			mode: EventsAuto,
			serve: func(t *testing.T, path string) {
				f := newFakeEventsCRI()
				f.unimplemented = true
				serveEvents(t, path, f, nil)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := testSocketPath(t)
			tc.serve(t, path)
			c := newTestClient(t, path, Options{})
			r := startEvents(context.Background(), t, c, EventsConfig{Mode: tc.mode}, nil)
			r.finished(t)
			if !errdefs.IsNotImplemented(r.err) || !strings.HasPrefix(r.err.Error(), "runtime events from ") {
				t.Fatalf("RunEvents = %v, want a not-implemented error naming the source", r.err)
			}
		})
	}
}

func TestRunEventsReturnsPromptlyWhenContextEnds(t *testing.T) {
	t.Run("while streaming", func(t *testing.T) {
		path := testSocketPath(t)
		f := newFakeEventsCRI()
		serveEvents(t, path, f, nil)
		c := newTestClient(t, path, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		r := startEvents(ctx, t, c, EventsConfig{Mode: EventsCRI}, nil)
		eventually(t, "the subscription", func() bool { return r.resyncCount() == 1 })
		cancel()
		r.finished(t)
		if r.err != nil {
			t.Errorf("RunEvents = %v, want nil after ctx ended", r.err)
		}
	})
	t.Run("while backing off", func(t *testing.T) {
		path := testSocketPath(t) // nothing listens
		c := newTestClient(t, path, Options{})
		clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
		c.clock = clk
		ctx, cancel := context.WithCancel(context.Background())
		r := startEvents(ctx, t, c, EventsConfig{}, nil)
		eventually(t, "RunEvents to back off", clk.HasWaiters)
		cancel()
		r.finished(t)
		if r.err != nil {
			t.Errorf("RunEvents = %v, want nil after ctx ended", r.err)
		}
		if n := r.resyncCount(); n != 0 {
			t.Errorf("Resync called %d times without a stream", n)
		}
	})
}

func TestEventErrorsCarryClassesNotGRPCStatus(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeEventsCRI()
	serveEvents(t, path, f, nil)
	c := newTestClient(t, path, Options{})
	s := &criSource{c: c}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := s.subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the subscription", func() bool { return f.feed.subscriptions() == 1 })
	f.feed.breakWith(t, status.Error(codes.Internal, "boom"))
	_, _, err = stream.recv()
	if !errdefs.IsInternal(err) || !strings.HasPrefix(err.Error(), "cri GetContainerEvents: ") {
		t.Errorf("recv error = %v, want an Internal-class error naming the call", err)
	}
	if _, isStatus := status.FromError(err); isStatus {
		t.Errorf("error %q still carries a gRPC status", err)
	}
	if errors.Is(err, errStreamEnded) {
		t.Errorf("error %q is not the end of the stream", err)
	}
}
