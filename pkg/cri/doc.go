// Package cri is nodeagent's client for a container runtime that speaks the
// Container Runtime Interface v1 (containerd with its CRI plugin) over a unix
// socket.
//
// It owns:
//
//   - the connection: one lazily dialled gRPC channel per Client. gRPC
//     reconnects by itself after the runtime restarts, so a Client lives as
//     long as the agent and callers never redial;
//   - deadlines: every method bounds its call on top of the caller's context
//     (Options.CallTimeout; PullImage uses Options.PullTimeout; StopContainer
//     and ExecSync add their own timeout to CallTimeout), so a hung runtime
//     never hangs a pod worker;
//   - error classes: gRPC status codes are translated once, here, into
//     containerd errdefs classes and wrapped with the operation and object
//     ("cri StartContainer <id>: ..."). Callers decide with errdefs.IsNotFound,
//     errdefs.IsUnavailable, IsRetryable and friends, never by matching text;
//   - the label and annotation names the agent puts on CRI objects (the
//     kubelet's, so crictl output reads naturally, plus LabelManagedBy and
//     LabelNodeName so the agent can find what it created);
//   - WaitReady, the start-up check that the endpoint really serves CRI v1;
//   - RunEvents, the runtime event stream that brings container exits to the
//     pod workers within milliseconds (see below).
//
// It keeps no state about pods or containers: the runtime is the source of
// truth and callers ask it again whenever they need to know.
//
// # Runtime events
//
// RunEvents subscribes to container events and hands each to a Handler, in
// order, from one goroutine, until its context ends. Two sources, chosen by
// EventsConfig.Mode:
//
//   - CRI GetContainerEvents (containerd 2.x): created, started, stopped
//     and deleted for containers and sandboxes, with the sandbox's status
//     (so the pod UID comes with the event). containerd sends "stopped" only
//     after deleting the task and updating the CRI status, 25-120ms after
//     the exit, and replays up to 5 minutes of events nobody was subscribed
//     for to the next subscriber.
//   - containerd's own event service (containerd 1.7, which answers
//     Unimplemented to GetContainerEvents; or forced): the /tasks/create,
//     start, exit and delete topics of the CRI namespace, 1-15ms after the
//     exit, spoken through containerd's small API module rather than its Go
//     client. Exits of exec'd processes (probes) are dropped. These events
//     carry only the container ID, and arrive while CRI's ContainerStatus
//     still says RUNNING (for the same 25-120ms).
//
// Auto mode starts with CRI and falls back to containerd for good on
// Unimplemented. The loop:
//
//	subscribe -> confirm (a unary call answered after it) -> Resync -> deliver ...
//	    ^                                                                  |
//	    +------ backoff 500ms doubling to 30s (reset after 30s up) <-- broken
//
// Events are hints, never the state: the runtime can drop them (a stream
// broken while an exit happened), so Resync, called after every
// (re)subscription, is where the caller relists, and a slow periodic relist
// stays the safety net. Each distinct problem (source and error class) is
// logged once at Warn, the recovery once at Info.
//
// Error classes as returned (see translate in errors.go):
//
//	gRPC code            class (errdefs unless noted)
//	NotFound             ErrNotFound
//	InvalidArgument      ErrInvalidArgument
//	AlreadyExists        ErrAlreadyExists
//	FailedPrecondition   ErrFailedPrecondition (ErrConflict / ErrNotModified by message suffix)
//	Unavailable          ErrUnavailable
//	Unimplemented        ErrNotImplemented
//	DeadlineExceeded     context.DeadlineExceeded (so errdefs.IsDeadlineExceeded and
//	                     errors.Is(err, context.DeadlineExceeded) both hold)
//	Canceled             context.Canceled
//	ResourceExhausted    ErrResourceExhausted
//	PermissionDenied     ErrPermissionDenied
//	Unauthenticated      ErrUnauthenticated
//	Aborted, OutOfRange, Internal, DataLoss: the errdefs class of the same name
//	anything else        ErrUnknown
package cri
