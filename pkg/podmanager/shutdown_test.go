package podmanager

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	testclock "k8s.io/utils/clock/testing"
)

// blockingStart holds StartContainer until released and reports whether its context was
// cancelled by then.
type blockingStart struct {
	*fakeRuntime
	started chan struct{}
	release chan struct{}
	ctxErr  chan error
}

func (b *blockingStart) StartContainer(ctx context.Context, id string) error {
	close(b.started)
	<-b.release
	b.ctxErr <- ctx.Err()
	return b.fakeRuntime.StartContainer(ctx, id)
}

// Shutting the agent down never cuts a CRI call short: containerd leaks a shim when a task
// create it is in the middle of is cancelled.
func TestShutdownDoesNotCancelACRICallInFlight(t *testing.T) {
	rt := &blockingStart{fakeRuntime: newFakeRuntime(), started: make(chan struct{}), release: make(chan struct{}), ctxErr: make(chan error, 1)}
	clk := testclock.NewFakeClock(time.Unix(1_700_000_000, 0))
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := New(Config{
		NodeName: "node1", PodLogsDir: t.TempDir(), ResolvConf: filepath.Join(t.TempDir(), "absent"),
		Log: logrus.NewEntry(log), Clock: clk, Sources: []string{"file"},
	}, rt, rt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { m.Run(ctx); close(stopped) }()
	m.Update("file", []*v1.Pod{testPod("web", v1.RestartPolicyAlways, busybox("main"))})
	// The worker's requeues run on the fake clock: move it along until the start is in flight.
	for deadline := time.Now().Add(10 * time.Second); ; clk.Step(time.Second) {
		select {
		case <-rt.started:
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("StartContainer was never called")
			}
			continue
		}
		break
	}
	cancel()
	close(rt.release)
	if err := <-rt.ctxErr; err != nil {
		t.Fatalf("StartContainer's context was cancelled by the shutdown: %v", err)
	}
	<-stopped
}
