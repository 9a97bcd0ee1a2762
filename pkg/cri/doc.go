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
//   - WaitReady, the start-up check that the endpoint really serves CRI v1.
//
// It keeps no state about pods or containers: the runtime is the source of
// truth and callers ask it again whenever they need to know.
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
