package prober

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

var _ Execer = (*cri.Client)(nil)

func TestExecProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reply   execReply
		want    Result
		message string // a part of the message
	}{
		{name: "exit 0 succeeds", reply: execReply{stdout: "fine"}, want: Success},
		{name: "exit 1 fails with the output", reply: execReply{code: 1, stdout: "db down\n", stderr: "retrying"}, want: Failure, message: "exited with code 1: db down\nretrying"},
		{name: "exit 1 without output says the code", reply: execReply{code: 1}, want: Failure, message: "exited with code 1"},
		{name: "timeout fails", reply: execReply{err: fmt.Errorf("cri ExecSync c1: %w", errgrpc.ToNative(grpcstatus.Error(codes.DeadlineExceeded, "timeout 3s exceeded")))}, want: Failure, message: "timed out after 3s"},
		{name: "a gone container fails", reply: execReply{err: fmt.Errorf("cri ExecSync c1: %w", errgrpc.ToNative(grpcstatus.Error(codes.NotFound, "container c1 not found")))}, want: Failure, message: "not found"},
		{name: "an unreachable runtime does not count", reply: execReply{err: fmt.Errorf("cri ExecSync c1: %w", errgrpc.ToNative(grpcstatus.Error(codes.Unavailable, "connection refused")))}, want: Unknown},
		{name: "output is capped", reply: execReply{code: 2, stdout: strings.Repeat("x", 3*maxMessage)}, want: Failure, message: "exited with code 2: xxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 0)
			h.exec.script("check", tc.reply)
			target := h.execTarget("c1", Liveness, "check", func(p *v1.Probe) {
				p.Exec.Command = []string{"check", "--deep"}
				p.TimeoutSeconds = 3
			})
			out := h.m.newHandler(&target).probe(context.Background(), settingsOf(target.Probe, target.Kind).timeout)
			if out.result != tc.want || !strings.Contains(out.message, tc.message) {
				t.Fatalf("probe = %v %q, want %v with %q", out.result, out.message, tc.want, tc.message)
			}
			if len(out.message) > maxMessage+100 {
				t.Fatalf("message of %d bytes", len(out.message))
			}
			c := h.nextCall()
			if c.id != "c1" || strings.Join(c.cmd, " ") != "check --deep" || c.timeout != 3*time.Second {
				t.Fatalf("ExecSync(%s, %v, %v), want the container, the command and timeoutSeconds", c.id, c.cmd, c.timeout)
			}
		})
	}
}
