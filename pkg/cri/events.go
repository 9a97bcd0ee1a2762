package cri

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
)

// EventsMode chooses where container events come from.
type EventsMode string

const (
	// EventsAuto uses CRI GetContainerEvents, and containerd's event service
	// if the runtime does not implement it (containerd 1.7).
	EventsAuto EventsMode = "auto"
	// EventsCRI uses CRI GetContainerEvents only.
	EventsCRI EventsMode = "cri"
	// EventsContainerd forces containerd's /tasks/* events, so that both
	// paths can be tested on containerd 2.x.
	EventsContainerd EventsMode = "containerd"
)

// ParseEventsMode parses a mode as written in flags and config files.
// Anything else is an error naming the allowed values, of class
// errdefs.ErrInvalidArgument.
func ParseEventsMode(s string) (EventsMode, error) {
	switch m := EventsMode(s); m {
	case EventsAuto, EventsCRI, EventsContainerd:
		return m, nil
	}
	return "", fmt.Errorf("events mode %q: want %q, %q or %q: %w",
		s, EventsAuto, EventsCRI, EventsContainerd, errdefs.ErrInvalidArgument)
}

// ContainerEventType is what happened to a container (or a sandbox).
type ContainerEventType string

const (
	// ContainerCreated: the container (its task, on the containerd path)
	// was created.
	ContainerCreated ContainerEventType = "created"
	// ContainerStarted: the container's process started.
	ContainerStarted ContainerEventType = "started"
	// ContainerStopped: the container's process exited. This is the event
	// the pod workers wait for.
	ContainerStopped ContainerEventType = "stopped"
	// ContainerDeleted: the container (its task, on the containerd path)
	// was deleted.
	ContainerDeleted ContainerEventType = "deleted"
)

// Values of ContainerEvent.Source.
const (
	SourceCRI        = "cri"
	SourceContainerd = "containerd"
)

// ContainerEvent is one container (or sandbox) life-cycle event from the
// runtime. Events are hints that something changed: the consumer asks the
// runtime for the current state (ContainerStatus, a relist) before acting.
type ContainerEvent struct {
	// ContainerID is the CRI container ID, or the sandbox ID for the
	// sandbox's own events (containerd sends those too; the consumer
	// decides what to do with them).
	ContainerID string
	// PodSandboxID is the sandbox the container belongs to, when the event
	// says (CRI path: from its PodSandboxStatus; containerd path: empty).
	PodSandboxID string
	// PodUID is the sandbox's LabelPodUID label when the event carries the
	// sandbox's labels (CRI path); empty otherwise.
	PodUID string
	Type   ContainerEventType
	// Time is when the runtime says it happened: CRI: the event's
	// CreatedAt; containerd: TaskExit's ExitedAt, else the envelope's
	// timestamp. Zero when the runtime did not say.
	Time time.Time
	// Source is SourceCRI or SourceContainerd.
	Source string
}

// EventsConfig configures RunEvents.
type EventsConfig struct {
	// Mode chooses the event source. Empty means EventsAuto.
	Mode EventsMode
	// ContainerdAddress is containerd's gRPC socket ("unix:///path" or an
	// absolute path) for the containerd path. Empty means this client's CRI
	// endpoint: containerd serves CRI and its own API on one socket.
	ContainerdAddress string
	// Namespace is the containerd namespace of CRI objects. Empty means
	// "k8s.io", the CRI plugin's.
	Namespace string
	// Log receives the stream's few log lines. Nil means the standard logger.
	Log *logrus.Entry
	// Handler receives every event, from one goroutine, in the order the
	// runtime sent them. It must not block for long: while it runs, events
	// queue up in the connection, and once that and containerd's per-
	// subscriber buffer (100 CRI events) are full, containerd's CRI plugin
	// blocks on sending the next event, and with it the CRI call that
	// caused it. Wake a worker without blocking and return. Required.
	Handler func(ContainerEvent)
	// Resync is called each time a stream is (re)established, after the
	// subscription is in place and before the stream's first event reaches
	// Handler, on Handler's goroutine. The caller relists there (or
	// schedules a relist), so that no exit that happened while no stream was
	// open is missed. May be nil.
	Resync func()
}

const (
	// defaultEventsNamespace is the containerd namespace of the CRI plugin.
	defaultEventsNamespace = "k8s.io"
	// eventsBackoffReset: a stream that lived this long was healthy, so the
	// next resubscription starts again from the initial backoff.
	eventsBackoffReset = 30 * time.Second
	// confirmTimeout bounds the unary round trip that confirms a new stream.
	confirmTimeout = 10 * time.Second
)

// errStreamEnded is what a stream that the runtime closed without an error
// (io.EOF on Recv) breaks with.
var errStreamEnded = errors.New("event stream ended by the runtime")

// eventSource opens subscriptions of one kind (CRI or containerd).
type eventSource interface {
	// name is the Source of its events.
	name() string
	// subscribe opens a stream; it ends when ctx does. Errors are
	// translated (errdefs classes).
	subscribe(ctx context.Context) (eventStream, error)
	// confirm makes one unary round trip on the stream's connection. The
	// runtime never acknowledges a subscription, but it reads the requests
	// of one connection in order: once a call sent after the subscription
	// is answered, the runtime has read the subscription and started its
	// handler, which registers it within microseconds. That is as close to
	// "in place" as the APIs allow, and it lets an immediate Unimplemented
	// arrive before the stream counts as established.
	confirm(ctx context.Context) error
	// close releases what the source owns (a connection it dialled).
	close() error
}

// eventStream is one open subscription.
type eventStream interface {
	// recv blocks for the next message. ok is false for a message that is
	// not an event this package reports (an exec's exit, another
	// namespace); err ends the stream: errStreamEnded or a translated error.
	recv() (ev ContainerEvent, ok bool, err error)
}

// RunEvents streams container events to cfg.Handler until ctx ends, then
// returns nil.
//
// A broken stream (or one that cannot be opened: the runtime is down or
// restarting) is re-established with backoff, 500ms doubling to 30s, reset
// after a stream that lived at least 30s; cfg.Resync is called after every
// (re)subscription. Each distinct problem (source and error class) is
// logged once at Warn, not per retry (retries are at Debug), and the
// recovery once at Info, so a runtime that is down for minutes costs two
// lines.
//
// In EventsAuto mode, Unimplemented from CRI GetContainerEvents (on open or
// on the first Recv, as containerd 1.7 answers) switches to containerd's
// event service for good, with one Info line saying so.
//
// RunEvents returns early only with an error that retrying cannot fix: an
// invalid cfg (errdefs.ErrInvalidArgument), or a forced source (EventsCRI,
// EventsContainerd, or containerd after the auto fallback) that the runtime
// does not implement (errdefs.ErrNotImplemented). The caller is then left
// with its relist.
func (c *Client) RunEvents(ctx context.Context, cfg EventsConfig) error {
	r, err := c.newEventsRunner(cfg)
	if err != nil {
		return err
	}
	defer r.close()
	return r.run(ctx)
}

// eventsRunner is one RunEvents: the loop's state, owned by its goroutine.
type eventsRunner struct {
	c       *Client
	cfg     EventsConfig
	log     *logrus.Entry
	src     eventSource
	backoff streamBackoff

	// warned is the problem last logged at Warn, zero while healthy.
	warned problemKey
	// down is when the current outage began, zero while healthy;
	// downAttempts counts its failed attempts.
	down         time.Time
	downAttempts int
	// everUp is set once the first stream was established.
	everUp bool
}

// problemKey identifies a distinct stream problem: where, and its error
// class (errdefs.Resolve, or errStreamEnded).
type problemKey struct {
	source string
	class  error
}

func (c *Client) newEventsRunner(cfg EventsConfig) (*eventsRunner, error) {
	if cfg.Mode == "" {
		cfg.Mode = EventsAuto
	}
	if _, err := ParseEventsMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	if cfg.Handler == nil {
		return nil, fmt.Errorf("runtime events: EventsConfig.Handler is nil: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = defaultEventsNamespace
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	r := &eventsRunner{
		c:   c,
		cfg: cfg,
		backoff: streamBackoff{
			initial:    c.backoffInitial,
			max:        c.backoffMax,
			resetAfter: eventsBackoffReset,
		},
	}
	if cfg.Mode == EventsContainerd {
		src, err := c.newContainerdSource(cfg.ContainerdAddress, cfg.Namespace)
		if err != nil {
			return nil, err
		}
		r.src = src
	} else {
		// Validate the containerd address now rather than at the fallback.
		if cfg.ContainerdAddress != "" {
			if _, err := socketPath(cfg.ContainerdAddress); err != nil {
				return nil, fmt.Errorf("runtime events: containerd address: %w: %w", err, errdefs.ErrInvalidArgument)
			}
		}
		r.src = &criSource{c: c}
	}
	r.setLog()
	return r, nil
}

// setLog binds the fields that name the current source.
func (r *eventsRunner) setLog() {
	f := logrus.Fields{"source": r.src.name()}
	if s, ok := r.src.(*containerdSource); ok {
		f["address"] = s.address
		f["namespace"] = s.namespace
	} else {
		f["endpoint"] = r.c.endpoint
	}
	r.log = r.cfg.Log.WithFields(f)
}

func (r *eventsRunner) close() {
	_ = r.src.close()
}

// run is the loop: subscribe, deliver until the stream breaks, back off,
// again. Only decisions live here; streamOnce does one subscription.
func (r *eventsRunner) run(ctx context.Context) error {
	for {
		lived, err := r.streamOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errdefs.IsNotImplemented(err) {
			if _, isCRI := r.src.(*criSource); isCRI && r.cfg.Mode == EventsAuto {
				if err := r.fallBackToContainerd(err); err != nil {
					return err
				}
				continue // a fallback is not a failure: no backoff
			}
			// Retrying cannot help; the caller logs it.
			return fmt.Errorf("runtime events from %s: %w", r.src.name(), err)
		}
		r.failed(err)

		t := r.c.clock.NewTimer(r.backoff.after(lived))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// streamOnce opens one subscription, confirms it, calls Resync and delivers
// its events until it breaks or ctx ends. lived is how long it was
// established (zero if it never was); err is why it ended.
func (r *eventsRunner) streamOnce(ctx context.Context) (lived time.Duration, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stream, err := r.src.subscribe(sctx)
	if err != nil {
		return 0, err
	}
	cctx, ccancel := context.WithTimeout(sctx, confirmTimeout)
	err = r.src.confirm(cctx)
	ccancel()
	if err != nil {
		return 0, err
	}

	// One goroutine receives, so that an answer that is already waiting can
	// be looked at before the stream counts as established.
	type result struct {
		ev  ContainerEvent
		err error
	}
	results := make(chan result)
	recvDone := make(chan struct{})
	defer func() { cancel(); <-recvDone }()
	go func() {
		defer close(recvDone)
		for {
			ev, ok, err := stream.recv()
			if err == nil && !ok {
				continue
			}
			select {
			case results <- result{ev, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	// A runtime that opens the stream but does not implement it (containerd
	// 1.7) has usually answered Unimplemented by now: that was no
	// subscription, so no Resync for it.
	var first *result
	select {
	case res := <-results:
		if res.err != nil {
			return 0, res.err
		}
		first = &res
	default:
	}

	established := r.c.clock.Now()
	r.up()
	if r.cfg.Resync != nil {
		r.cfg.Resync()
	}
	if first != nil {
		r.cfg.Handler(first.ev)
	}
	for {
		select {
		case <-ctx.Done():
			return r.c.clock.Since(established), ctx.Err()
		case res := <-results:
			if res.err != nil {
				return r.c.clock.Since(established), res.err
			}
			r.cfg.Handler(res.ev)
		}
	}
}

// failed records one failed attempt or broken stream, logging a problem
// at Warn only when it differs from the one already reported.
func (r *eventsRunner) failed(err error) {
	if r.down.IsZero() {
		r.down = r.c.clock.Now()
		r.downAttempts = 0
	}
	r.downAttempts++
	key := problemKey{source: r.src.name(), class: errdefs.Resolve(err)}
	if errors.Is(err, errStreamEnded) {
		key.class = errStreamEnded
	}
	if key != r.warned {
		r.log.WithError(err).Warn("container event stream down; resubscribing with backoff")
		r.warned = key
		return
	}
	r.log.WithError(err).WithField("attempts", r.downAttempts).Debug("container event stream still down")
}

// up records an established stream.
func (r *eventsRunner) up() {
	switch {
	case !r.down.IsZero() && r.everUp:
		r.c.metrics.streamReconnected()
		r.log.WithFields(logrus.Fields{
			"attempts": r.downAttempts,
			"down":     r.c.clock.Since(r.down).Round(time.Millisecond).String(),
		}).Info("container event stream re-established")
	case !r.everUp:
		r.log.Info("container event stream established")
	}
	r.everUp = true
	r.down = time.Time{}
	r.downAttempts = 0
	r.warned = problemKey{}
}

// fallBackToContainerd switches an auto-mode runner from CRI to
// containerd's event service, for good.
func (r *eventsRunner) fallBackToContainerd(criErr error) error {
	src, err := r.c.newContainerdSource(r.cfg.ContainerdAddress, r.cfg.Namespace)
	if err != nil {
		return err
	}
	_ = r.src.close()
	r.src = src
	r.setLog()
	r.log.WithField("cri_error", criErr.Error()).Info(
		"runtime does not implement CRI container events; using containerd's event service")
	return nil
}

// streamBackoff paces resubscriptions: initial doubling to max, back to
// initial after a stream that lived at least resetAfter.
type streamBackoff struct {
	initial, max, resetAfter time.Duration
	next                     time.Duration // zero: start from initial
}

// after returns how long to wait before the next subscription, given how
// long the stream that just ended was established (zero if it never was).
func (b *streamBackoff) after(lived time.Duration) time.Duration {
	if lived >= b.resetAfter || b.next == 0 {
		b.next = b.initial
	}
	d := b.next
	b.next = min(2*b.next, b.max)
	return d
}
