package prober

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// execProbe runs a command in the container through the CRI: exit 0 is success.
type execProbe struct {
	exec Execer
	id   string
	cmd  []string
}

func (p *execProbe) probe(ctx context.Context, timeout time.Duration) outcome {
	stdout, stderr, code, err := p.exec.ExecSync(ctx, p.id, p.cmd, timeout)
	switch {
	case err == nil:
	case errdefs.IsDeadlineExceeded(err):
		return outcome{result: Failure, message: fmt.Sprintf("command %q timed out after %s", p.cmd, timeout)}
	case errdefs.IsUnavailable(err), errdefs.IsCanceled(err):
		// The runtime did not answer: nothing is known about the container. The kubelet
		// throws such runs away rather than kill a container over a runtime restart.
		return outcome{result: Unknown, message: err.Error()}
	default:
		return outcome{result: Failure, message: err.Error()}
	}
	if code == 0 {
		return outcome{result: Success}
	}
	out := strings.TrimSpace(truncate(string(stdout) + string(stderr)))
	if out == "" {
		return outcome{result: Failure, message: fmt.Sprintf("command %q exited with code %d", p.cmd, code)}
	}
	return outcome{result: Failure, message: fmt.Sprintf("command %q exited with code %d: %s", p.cmd, code, out)}
}

func truncate(s string) string {
	if len(s) > maxMessage {
		return strings.ToValidUTF8(s[:maxMessage], "")
	}
	return s
}
