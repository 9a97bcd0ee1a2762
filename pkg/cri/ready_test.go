package cri

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// readyRun is one WaitReady running in the background on a fake clock.
type readyRun struct {
	clock *clocktesting.FakeClock
	hook  *logtest.Hook
	done  chan struct{}
	resp  *runtimeapi.VersionResponse
	err   error
}

func startWaitReady(ctx context.Context, t *testing.T, c *Client) *readyRun {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	r := &readyRun{
		clock: clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0)),
		hook:  hook,
		done:  make(chan struct{}),
	}
	c.clock = r.clock
	go func() {
		defer close(r.done)
		r.resp, r.err = c.WaitReady(ctx, logrus.NewEntry(logger))
	}()
	return r
}

// sleeping waits until WaitReady has finished an attempt and is waiting on
// its backoff timer.
func (r *readyRun) sleeping(t *testing.T) {
	t.Helper()
	eventually(t, "WaitReady to back off", r.clock.HasWaiters)
}

// finished reports whether WaitReady has returned.
func (r *readyRun) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *readyRun) entries(level logrus.Level, msg string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range r.hook.AllEntries() {
		if e.Level == level && e.Message == msg {
			out = append(out, e)
		}
	}
	return out
}

func TestWaitReadyReturnsOnceTheRuntimeSocketAppears(t *testing.T) {
	path := testSocketPath(t)
	c := newTestClient(t, path, Options{CallTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r := startWaitReady(ctx, t, c)
	r.sleeping(t) // the first attempt found no socket

	warns := r.entries(logrus.WarnLevel, "container runtime not usable yet")
	if len(warns) != 1 || !strings.Contains(warns[0].Data[logrus.ErrorKey].(error).Error(), "not reachable") {
		t.Fatalf("warnings = %v, want one saying the endpoint is not reachable", warns)
	}

	serveFake(t, path, newFakeCRI())
	// gRPC's own reconnect backoff runs on the real clock, so an attempt or
	// two may still fail after the server is up: keep advancing.
	eventually(t, "WaitReady to return", func() bool {
		if r.clock.HasWaiters() {
			r.clock.Step(defaultReadyBackoffMax)
		}
		return r.finished()
	})

	if r.err != nil {
		t.Fatalf("WaitReady: %v", r.err)
	}
	if r.resp.GetRuntimeName() != "fake" || r.resp.GetRuntimeApiVersion() != "v1" {
		t.Errorf("WaitReady answer = %v, want the fake runtime's v1 version", r.resp)
	}
	if n := len(r.entries(logrus.InfoLevel, "container runtime is ready")); n != 1 {
		t.Errorf("%d \"ready\" lines, want 1 after the earlier warning", n)
	}
}

func TestWaitReadyIsQuietWhenTheRuntimeIsUp(t *testing.T) {
	path := testSocketPath(t)
	serveFake(t, path, newFakeCRI())
	c := newTestClient(t, path, Options{})

	r := startWaitReady(context.Background(), t, c)
	<-r.done
	if r.err != nil {
		t.Fatalf("WaitReady: %v", r.err)
	}
	if n := len(r.hook.AllEntries()); n != 0 {
		t.Errorf("logged %d lines for a healthy runtime, want none", n)
	}
}

func TestWaitReadyNamesWhatIsWrongAndWarnsOnce(t *testing.T) {
	tests := []struct {
		name    string
		serve   func(t *testing.T, path string)
		want    string // in the returned error and the single warning
		isClass func(error) bool
	}{
		{
			name:    "gRPC server without the CRI service does not serve CRI v1",
			serve:   func(t *testing.T, path string) { serveFake(t, path, nil) },
			want:    "does not serve CRI v1 (is it containerd with the CRI plugin enabled?)",
			isClass: errdefs.IsNotImplemented,
		},
		{
			name:  "socket that does not speak gRPC is named as such",
			serve: serveNotGRPC,
			want:  "accepts connections but does not answer gRPC",
			isClass: func(err error) bool {
				return errdefs.IsUnavailable(err) || errdefs.IsDeadlineExceeded(err)
			},
		},
		{
			name: "runtime with another CRI API version is rejected",
			serve: func(t *testing.T, path string) {
				f := newFakeCRI()
				f.apiVersion = "v1alpha2"
				serveFake(t, path, f)
			},
			want:    `speaks CRI API version "v1alpha2" (runtime fake 1.0), want v1`,
			isClass: errdefs.IsNotImplemented,
		},
		{
			name:    "missing socket is not reachable",
			serve:   func(*testing.T, string) {},
			want:    "not reachable",
			isClass: errdefs.IsUnavailable,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := testSocketPath(t)
			tc.serve(t, path)
			c := newTestClient(t, path, Options{CallTimeout: 5 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			r := startWaitReady(ctx, t, c)
			const attempts = 5
			for range attempts - 1 {
				r.sleeping(t)
				r.clock.Step(defaultReadyBackoffMax)
			}
			r.sleeping(t)
			cancel()
			<-r.done

			if r.err == nil {
				t.Fatal("WaitReady succeeded, want an error")
			}
			msg := r.err.Error()
			if !strings.HasPrefix(msg, "runtime endpoint "+c.Endpoint()) || !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to name the endpoint and say %q", msg, tc.want)
			}
			if !tc.isClass(r.err) {
				t.Errorf("error %q lost its class", msg)
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("error %q does not wrap the context's error", msg)
			}

			warns := r.entries(logrus.WarnLevel, "container runtime not usable yet")
			if len(warns) != 1 {
				t.Fatalf("%d warnings over %d attempts, want exactly 1", len(warns), attempts)
			}
			if got := warns[0].Data[logrus.ErrorKey].(error).Error(); !strings.Contains(got, tc.want) {
				t.Errorf("warning error = %q, want it to say %q", got, tc.want)
			}
			if warns[0].Data["endpoint"] != c.Endpoint() {
				t.Errorf("warning endpoint field = %v, want %s", warns[0].Data["endpoint"], c.Endpoint())
			}
			// Each step advanced 30s, so the unchanged problem was summarised.
			still := r.entries(logrus.InfoLevel, "still waiting for container runtime")
			if len(still) == 0 || still[len(still)-1].Data["attempts"] != attempts {
				t.Errorf("\"still waiting\" lines = %d (last %v), want some, the last at attempt %d",
					len(still), lastData(still), attempts)
			}
		})
	}
}

func TestWaitReadyBacksOffExponentiallyToTheCap(t *testing.T) {
	path := testSocketPath(t) // nothing listens
	c := newTestClient(t, path, Options{CallTimeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	r := startWaitReady(ctx, t, c)
	want := []time.Duration{
		500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second,
	}
	for i, d := range want {
		r.sleeping(t)
		// Just short of the delay, the timer must not have fired.
		r.clock.Step(d - time.Millisecond)
		if !r.clock.HasWaiters() {
			t.Fatalf("backoff %d fired before %v", i+1, d)
		}
		r.clock.Step(time.Millisecond)
	}
	r.sleeping(t)
	cancel()
	<-r.done
}

func TestWaitReadyGivesUpWhenContextEndsBeforeFirstAnswer(t *testing.T) {
	path := testSocketPath(t)
	c := newTestClient(t, path, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := c.WaitReady(ctx, nil)
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "runtime endpoint "+c.Endpoint()) {
		t.Fatalf("error = %v, want one naming the endpoint and wrapping context.Canceled", err)
	}
}

func lastData(entries []*logrus.Entry) logrus.Fields {
	if len(entries) == 0 {
		return nil
	}
	return entries[len(entries)-1].Data
}
