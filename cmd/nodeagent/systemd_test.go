package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// fakeSystemd is a unixgram socket standing in for systemd's NOTIFY_SOCKET; every datagram
// the agent sends arrives on msgs.
type fakeSystemd struct {
	msgs chan string
}

func newFakeSystemd(t *testing.T, watchdog time.Duration) *fakeSystemd {
	t.Helper()
	// Not t.TempDir: unix socket paths end at 108 bytes and test names are long.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
	}
	t.Setenv("WATCHDOG_PID", "")
	f := &fakeSystemd{msgs: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			f.msgs <- string(buf[:n])
		}
	}()
	return f
}

// expect reads messages until one contains want, returning those read before it.
func (f *fakeSystemd) expect(t *testing.T, want string, timeout time.Duration) []string {
	t.Helper()
	var before []string
	deadline := time.After(timeout)
	for {
		select {
		case m := <-f.msgs:
			if strings.Contains(m, want) {
				return before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("no %q within %s; got %q", want, timeout, before)
		}
	}
}

// during collects every message sent in d.
func (f *fakeSystemd) during(d time.Duration) []string {
	var got []string
	deadline := time.After(d)
	for {
		select {
		case m := <-f.msgs:
			got = append(got, m)
		case <-deadline:
			return got
		}
	}
}

func count(msgs []string, sub string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

func testLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func TestSystemdReadyOnlyOnceReadyThenWatchdogPings(t *testing.T) {
	sd := newFakeSystemd(t, 200*time.Millisecond)
	var isReady atomic.Bool
	ready := func() error {
		if !isReady.Load() {
			return errors.New("waiting for the container runtime")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := startSystemd(ctx, ready, func() error { return nil }, testLog())

	before := sd.expect(t, "STATUS=waiting for the container runtime", 2*time.Second)
	if count(before, "READY=1") > 0 {
		t.Fatalf("READY=1 before the agent was ready: %q", before)
	}
	// Start-up may take longer than the watchdog: pings are not withheld before READY=1.
	early := sd.during(500 * time.Millisecond)
	if count(early, "READY=1") > 0 || count(early, "WATCHDOG=1") < 2 {
		t.Fatalf("while starting: want watchdog pings and no READY=1, got %q", early)
	}

	isReady.Store(true)
	sd.expect(t, "READY=1", 2*time.Second)
	after := sd.during(500 * time.Millisecond)
	if n := count(after, "WATCHDOG=1"); n < 3 {
		t.Fatalf("after READY=1: %d watchdog pings in 500ms at a 100ms period: %q", n, after)
	}

	cancel()
	sd.expect(t, "STOPPING=1", 2*time.Second)
	wait()
}

func TestSystemdWatchdogWithheldWhileNotAlive(t *testing.T) {
	sd := newFakeSystemd(t, 100*time.Millisecond)
	var wedged atomic.Bool
	wedged.Store(true)
	alive := func() error {
		if wedged.Load() {
			return errors.New("sync loop silent for 2m0s")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := startSystemd(ctx, func() error { return nil }, alive, testLog())
	defer func() { cancel(); wait() }()

	sd.expect(t, "READY=1", 2*time.Second)
	sd.expect(t, "STATUS=not alive, withholding watchdog pings: sync loop silent for 2m0s", 2*time.Second)
	if got := sd.during(500 * time.Millisecond); count(got, "WATCHDOG=1") > 0 {
		t.Fatalf("watchdog pinged while the agent was not alive: %q", got)
	}

	wedged.Store(false)
	sd.expect(t, "STATUS=running", 2*time.Second)
	sd.expect(t, "WATCHDOG=1", 2*time.Second)
}

func TestSystemdWithoutWatchdogSendsReadyAndStopping(t *testing.T) {
	sd := newFakeSystemd(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	wait := startSystemd(ctx, nil, nil, testLog())
	sd.expect(t, "READY=1", 2*time.Second)
	if got := sd.during(300 * time.Millisecond); count(got, "WATCHDOG=1") > 0 {
		t.Fatalf("watchdog pings without WATCHDOG_USEC: %q", got)
	}
	cancel()
	sd.expect(t, "STOPPING=1", 2*time.Second)
	wait()
}

func TestSystemdNoOpWithoutNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "200000")
	ctx, cancel := context.WithCancel(context.Background())
	called := false
	wait := startSystemd(ctx, func() error { called = true; return nil }, nil, testLog())
	cancel()
	wait() // returns at once: no goroutine was started
	if called {
		t.Fatal("ready was polled although the agent is not under systemd")
	}
}

func TestStderrIsJournalOnlyForItsOwnStream(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env string
		want      bool
	}{
		{"unset", "", false},
		{"stderr's own stream", fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{"inherited from a parent whose stderr was the journal", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"malformed", "journal", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", tc.env)
			if got := stderrIsJournal(); got != tc.want {
				t.Fatalf("stderrIsJournal() with JOURNAL_STREAM=%q = %v, want %v", tc.env, got, tc.want)
			}
		})
	}
}

func TestJournalFormatterPrefixesPriorityAndDropsTextTimestamps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inner  logrus.Formatter
		level  logrus.Level
		prefix string
		stamp  bool // the line keeps a timestamp
	}{
		{"text warning", &logrus.TextFormatter{FullTimestamp: true}, logrus.WarnLevel, "<4>", false},
		{"text info", &logrus.TextFormatter{FullTimestamp: true}, logrus.InfoLevel, "<6>", false},
		{"text error", &logrus.TextFormatter{FullTimestamp: true}, logrus.ErrorLevel, "<3>", false},
		{"text debug", &logrus.TextFormatter{FullTimestamp: true}, logrus.DebugLevel, "<7>", false},
		{"json keeps its timestamps", &logrus.JSONFormatter{}, logrus.InfoLevel, "<6>", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := logrus.New()
			l.SetOutput(&buf)
			l.SetLevel(logrus.TraceLevel)
			l.SetFormatter(newJournalFormatter(tc.inner))
			l.WithField("pod", "default/web").Log(tc.level, "container started")
			line := buf.String()
			if !strings.HasPrefix(line, tc.prefix) {
				t.Fatalf("line %q does not start with %s", line, tc.prefix)
			}
			if !strings.Contains(line, "container started") || !strings.Contains(line, "default/web") {
				t.Fatalf("line %q lost the message or a field", line)
			}
			if got := strings.Contains(line, "time"); got != tc.stamp {
				t.Fatalf("line %q: has a timestamp = %v, want %v", line, got, tc.stamp)
			}
		})
	}
}

func TestSystemdStopSendsStoppingBeforeCtxEnds(t *testing.T) {
	sd := newFakeSystemd(t, 0)
	stop := startSystemd(context.Background(), nil, nil, testLog())
	sd.expect(t, "READY=1", 2*time.Second)
	stop() // run returning an error: ctx never ends, stop must not hang
	sd.expect(t, "STOPPING=1", 2*time.Second)
}
