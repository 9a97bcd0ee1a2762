package backoff

import (
	"testing"
	"time"

	testclock "k8s.io/utils/clock/testing"
)

func TestBackoffDoublesAndCaps(t *testing.T) {
	clk := testclock.NewFakePassiveClock(time.Unix(1000, 0))
	b := New(Config{Initial: 10 * time.Second, Max: 40 * time.Second, Reset: 10 * time.Minute}, clk)
	want := []time.Duration{10, 20, 40, 40}
	for i, w := range want {
		if got := b.Failed("c"); got != w*time.Second {
			t.Fatalf("failure %d: wait %v, want %v", i+1, got, w*time.Second)
		}
	}
}

func TestBackoffRemainingCountsDown(t *testing.T) {
	clk := testclock.NewFakePassiveClock(time.Unix(1000, 0))
	b := New(Config{}, clk)
	if r := b.Remaining("c"); r != 0 {
		t.Fatalf("unknown key must not wait, got %v", r)
	}
	b.Failed("c")
	clk.SetTime(clk.Now().Add(4 * time.Second))
	if r := b.Remaining("c"); r != 6*time.Second {
		t.Fatalf("remaining = %v, want 6s", r)
	}
	clk.SetTime(clk.Now().Add(6 * time.Second))
	if r := b.Remaining("c"); r != 0 {
		t.Fatalf("remaining after the wait = %v, want 0", r)
	}
}

func TestBackoffResetsAfterQuietPeriod(t *testing.T) {
	clk := testclock.NewFakePassiveClock(time.Unix(1000, 0))
	b := New(Config{Initial: time.Second, Max: time.Minute, Reset: 10 * time.Minute}, clk)
	b.Failed("c")
	b.Failed("c")
	if got := b.Current("c"); got != 2*time.Second {
		t.Fatalf("current = %v, want 2s", got)
	}
	clk.SetTime(clk.Now().Add(10 * time.Minute))
	if got := b.Failed("c"); got != time.Second {
		t.Fatalf("after 10m quiet the wait restarts at initial, got %v", got)
	}
	clk.SetTime(clk.Now().Add(10 * time.Minute))
	b.GC()
	if got := b.Current("c"); got != 0 {
		t.Fatalf("GC kept a stale key: %v", got)
	}
}

func TestBackoffKeysAreIndependent(t *testing.T) {
	clk := testclock.NewFakePassiveClock(time.Unix(1000, 0))
	b := New(Config{}, clk)
	b.Failed("a")
	b.Failed("a")
	if got := b.Failed("b"); got != 10*time.Second {
		t.Fatalf("key b inherited a's wait: %v", got)
	}
	b.Forget("a")
	if r := b.Remaining("a"); r != 0 {
		t.Fatalf("forgotten key still waits %v", r)
	}
}

func TestBackoffRemainingSinceCountsFromTheFailure(t *testing.T) {
	clk := testclock.NewFakePassiveClock(time.Unix(1000, 0))
	b := New(Config{Initial: 10 * time.Second, Max: time.Minute, Reset: 10 * time.Minute}, clk)
	b.Failed("c") // restarted now; the next restart waits 10s after that instance exits
	exit := clk.Now().Add(3 * time.Second)
	clk.SetTime(exit.Add(time.Second))
	if r := b.RemainingSince("c", exit); r != 9*time.Second {
		t.Fatalf("remaining = %v, want 9s (10s from the exit)", r)
	}
	cleanExit := clk.Now().Add(10 * time.Minute)
	clk.SetTime(cleanExit)
	if r := b.RemainingSince("c", cleanExit); r != 0 {
		t.Fatalf("after 10m of clean running the restart must be immediate, got %v", r)
	}
}
