package cri

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// translate is the one place where a gRPC error from the runtime becomes an
// errdefs class (errgrpc.ToNative; the table is in doc.go). The result names
// the operation and, when there is one, the object, and keeps the class in
// its chain so callers use errdefs.IsNotFound(err) and friends.
//
// Every exported method calls it exactly once on its way out; nothing else in
// the package wraps a gRPC error, so a class is never translated twice.
func translate(op, object string, err error) error {
	if err == nil {
		return nil
	}
	native := errgrpc.ToNative(err)
	if object == "" {
		return fmt.Errorf("cri %s: %w", op, native)
	}
	return fmt.Errorf("cri %s %s: %w", op, object, native)
}

// IsRetryable reports whether err is worth retrying after a backoff as it is:
// the runtime was unreachable (errdefs.ErrUnavailable) or did not answer in
// time (context.DeadlineExceeded). Everything else (NotFound, InvalidArgument,
// NotImplemented, ...) will fail the same way again and needs a decision.
//
// A context.Canceled error is not retryable: the caller gave up.
func IsRetryable(err error) bool {
	return errdefs.IsUnavailable(err) || errdefs.IsDeadlineExceeded(err)
}
