package podmanager

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	testclock "k8s.io/utils/clock/testing"

	"github.com/nodeagent/nodeagent/pkg/podmanager/prober"
)

// hookRuntime is the fake runtime whose ExecSync (a hook) takes time on the fake clock and
// records the context and timeout it was given.
type hookRuntime struct {
	*fakeRuntime
	clk   *testclock.FakeClock
	takes time.Duration

	mu    sync.Mutex
	hooks []hookCall // guarded by mu
}

type hookCall struct {
	ctxErr  error
	timeout time.Duration
}

func (r *hookRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error) {
	r.mu.Lock()
	r.hooks = append(r.hooks, hookCall{ctxErr: ctx.Err(), timeout: timeout})
	r.mu.Unlock()
	r.clk.Step(r.takes)
	return r.fakeRuntime.ExecSync(ctx, id, cmd, timeout)
}

func (h *harness) hooksTaking(d time.Duration) *hookRuntime {
	r := &hookRuntime{fakeRuntime: h.rt, clk: h.clk, takes: d}
	h.m.rt = r
	return r
}

func withPreStop(c v1.Container) v1.Container {
	c.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"sh", "-c", "drain"}}}}
	return c
}

func TestSecondsClampsAndNeverWraps(t *testing.T) {
	long := time.Duration(maxSeconds) * time.Second
	for _, tc := range []struct {
		in   int64
		want time.Duration
	}{
		{math.MinInt64, 0},
		{-5, 0},
		{0, 0},
		{30, 30 * time.Second},
		{10000000000, long},   // wrapped to about -267 years
		{math.MaxInt64, long}, // wrapped to -1 s
	} {
		got := seconds(tc.in)
		if got != tc.want {
			t.Errorf("seconds(%d) = %v, want %v", tc.in, got, tc.want)
		}
		// What is built on it must not wrap either.
		if got+terminateSlack < terminateSlack || got+time.Hour < 0 {
			t.Errorf("seconds(%d) + slack overflows", tc.in)
		}
		if now := time.Now(); now.Add(got).Before(now) {
			t.Errorf("now + seconds(%d) is in the past", tc.in)
		}
	}
}

func TestStopTimeoutRoundsUpWithTheKubeletsFloor(t *testing.T) {
	for _, tc := range []struct {
		left time.Duration
		want int64
	}{
		{-time.Hour, minStopGrace},
		{0, minStopGrace},
		{time.Millisecond, minStopGrace},
		{999 * time.Millisecond, minStopGrace},
		{2 * time.Second, 2},
		{2*time.Second + time.Millisecond, 3},
		{29*time.Second + 990*time.Millisecond, 30},
		{30 * time.Second, 30},
		{seconds(math.MaxInt64), maxSeconds},
		{time.Duration(math.MaxInt64), maxSeconds},
	} {
		if got := stopTimeout(tc.left); got != tc.want {
			t.Errorf("stopTimeout(%v) = %d, want %d", tc.left, got, tc.want)
		}
	}
}

// TestTerminationSharesOneDeadlineRoundedUp: a deleted pod's containers run preStop, then
// get what is left of the grace period, rounded up, and at least the kubelet's 2 s; huge
// grace periods are very long, not expired.
func TestTerminationSharesOneDeadlineRoundedUp(t *testing.T) {
	for _, tc := range []struct {
		name        string
		grace       int64
		preStop     time.Duration // how long preStop takes; 0: none
		wantTimeout int64
		wantHooks   int
	}{
		{name: "grace 1 still gets a stop signal", grace: 1, wantTimeout: 2},
		{name: "grace 30 loses no second", grace: 30, wantTimeout: 30},
		{name: "preStop of 300ms costs no whole second", grace: 30, preStop: 300 * time.Millisecond, wantTimeout: 30, wantHooks: 1},
		{name: "preStop counts against the grace", grace: 30, preStop: 10500 * time.Millisecond, wantTimeout: 20, wantHooks: 1},
		{name: "preStop that used it all leaves the kubelet's 2s", grace: 30, preStop: 40 * time.Second, wantTimeout: 2, wantHooks: 1},
		{name: "grace 1 with preStop", grace: 1, preStop: 100 * time.Millisecond, wantTimeout: 2, wantHooks: 1},
		{name: "grace 0 kills at once without preStop", grace: 0, preStop: time.Second, wantTimeout: 0},
		{name: "negative grace is 0", grace: -3, preStop: time.Second, wantTimeout: 0},
		{name: "grace 10000000000 is very long", grace: 10000000000, preStop: time.Second, wantTimeout: maxSeconds - 1, wantHooks: 1},
		{name: "grace MaxInt64 is very long", grace: math.MaxInt64, preStop: time.Second, wantTimeout: maxSeconds - 1, wantHooks: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			hooks := h.hooksTaking(tc.preStop)
			c := busybox("app")
			if tc.preStop > 0 {
				c = withPreStop(c)
			}
			pod := testPod("web", v1.RestartPolicyAlways, c)
			pod.Spec.TerminationGracePeriodSeconds = &tc.grace
			h.run(pod)
			h.settle(pod.UID)
			id := runningID(h, "app")

			h.run() // the manifest is gone
			if _, done := h.m.workers[pod.UID].syncOnce(t.Context()); !done {
				t.Fatal("the pod was not terminated")
			}
			if got, ok := h.rt.stopTimeouts[id]; !ok || got != tc.wantTimeout {
				t.Errorf("StopContainer timeout = %d (called: %v), want %d", got, ok, tc.wantTimeout)
			}
			if len(hooks.hooks) != tc.wantHooks {
				t.Fatalf("preStop ran %d times, want %d", len(hooks.hooks), tc.wantHooks)
			}
			for _, hc := range hooks.hooks {
				if hc.ctxErr != nil || hc.timeout <= 0 {
					t.Errorf("preStop ran with context error %v and timeout %v", hc.ctxErr, hc.timeout)
				}
			}
			if len(h.rt.sandboxes) != 0 || len(h.rt.containers) != 0 {
				t.Errorf("left %d sandboxes and %d containers", len(h.rt.sandboxes), len(h.rt.containers))
			}
		})
	}
}

// TestSidecarsStoppedLastStillGetAStopSignal: app containers that use the whole grace leave
// the sidecars the kubelet's 2 s, not an immediate SIGKILL.
func TestSidecarsStoppedLastStillGetAStopSignal(t *testing.T) {
	h := newHarness(t)
	h.hooksTaking(8 * time.Second) // more than the pod's 7 s
	always := v1.ContainerRestartPolicyAlways
	side := busybox("side")
	side.RestartPolicy = &always
	pod := testPod("web", v1.RestartPolicyAlways, withPreStop(busybox("app")))
	pod.Spec.InitContainers = []v1.Container{side}
	h.run(pod)
	h.settle(pod.UID)
	app, sidecar := runningID(h, "app"), runningID(h, "side")
	if app == "" || sidecar == "" {
		t.Fatal("pod did not start fully")
	}
	h.run()
	h.m.workers[pod.UID].syncOnce(t.Context())
	if h.rt.stopTimeouts[app] != minStopGrace || h.rt.stopTimeouts[sidecar] != minStopGrace {
		t.Fatalf("stop timeouts = %v, want %d for both", h.rt.stopTimeouts, minStopGrace)
	}
}

// TestHugeGraceElsewhereIsVeryLong: the other paths that stop a container or bound a hook
// with a grace period (a failed liveness probe with its own grace, postStart) treat huge
// values as very long.
func TestHugeGraceElsewhereIsVeryLong(t *testing.T) {
	for _, grace := range []int64{10000000000, math.MaxInt64} {
		t.Run(fmt.Sprintf("liveness probe grace %d", grace), func(t *testing.T) {
			h, p := withProber(t)
			hooks := h.hooksTaking(time.Second)
			c := withPreStop(busybox("web"))
			c.LivenessProbe = httpProbe()
			c.LivenessProbe.TerminationGracePeriodSeconds = &grace
			pod := testPod("web", v1.RestartPolicyAlways, c)
			h.run(pod)
			h.settle(pod.UID)
			id := runningID(h, "web")
			p.set(id, prober.Liveness, prober.Failure)
			h.settle(pod.UID)
			// preStop took 1 s of it.
			if h.rt.stopTimeouts[id] != maxSeconds-1 || len(hooks.hooks) != 1 || hooks.hooks[0].ctxErr != nil {
				t.Fatalf("killed with timeout %d after hooks %+v, want %d after one live preStop", h.rt.stopTimeouts[id], hooks.hooks, int64(maxSeconds-1))
			}
		})
		t.Run(fmt.Sprintf("postStart under a grace of %d", grace), func(t *testing.T) {
			h := newHarness(t)
			hooks := h.hooksTaking(time.Second)
			c := busybox("web")
			c.Lifecycle = &v1.Lifecycle{PostStart: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}}
			pod := testPod("web", v1.RestartPolicyAlways, c)
			pod.Spec.TerminationGracePeriodSeconds = &grace
			h.run(pod)
			h.settle(pod.UID)
			if runningID(h, "web") == "" || len(hooks.hooks) != 1 || hooks.hooks[0].ctxErr != nil || hooks.hooks[0].timeout <= 0 {
				t.Fatalf("postStart ran as %+v; container running: %v", hooks.hooks, runningID(h, "web") != "")
			}
		})
	}
}

// TestSleepHookOfHugeSecondsSleepsInsteadOfReturning: a sleep of MaxInt64 seconds used to
// wrap to -1 s and end at once.
func TestSleepHookOfHugeSecondsSleepsInsteadOfReturning(t *testing.T) {
	for _, tc := range []struct {
		seconds int64
		sleeps  bool
	}{
		{10000000000, true},
		{math.MaxInt64, true},
		{-1, false},
	} {
		h := newHarness(t)
		w := newWorker(h.m, "uid")
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- w.runHook(ctx, &v1.Container{Name: "app"}, "id", &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: tc.seconds}})
		}()
		for !h.clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		if !tc.sleeps {
			h.clk.Step(0) // the fake clock fires even a zero wait only when it moves
			if err := <-done; err != nil {
				t.Errorf("sleep %d: %v, want an immediate nil", tc.seconds, err)
			}
			cancel()
			continue
		}
		h.clk.Step(24 * time.Hour)
		select {
		case err := <-done:
			t.Fatalf("sleep %d s ended after a day: %v", tc.seconds, err)
		case <-time.After(20 * time.Millisecond):
		}
		cancel()
		if err := <-done; err == nil {
			t.Errorf("sleep %d s: cancelled hook returned nil", tc.seconds)
		}
	}
}
