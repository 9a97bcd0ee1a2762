package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
)

// readyPollPeriod is how often, before READY=1, the agent asks whether it is ready and
// refreshes STATUS= with what it still waits for.
const readyPollPeriod = 250 * time.Millisecond

// startSystemd speaks systemd's notify protocol when the agent runs as a Type=notify service
// (deploy/nodeagent.service); without NOTIFY_SOCKET it does nothing. It returns stop, which
// sends STOPPING=1 (at once, if ctx has not ended yet: run is returning an error) and waits
// until it is sent; defer it, so it runs before the process exits on every path.
//
// The protocol, as systemd reads it:
//   - STATUS=<what ready says> while the agent starts ("waiting for the container runtime"),
//     shown by `systemctl status nodeagent`;
//   - READY=1 once ready returns nil (the runtime answered and every pod source has synced
//     once). Until then `systemctl start` waits, bounded by the unit's TimeoutStartSec;
//   - WATCHDOG=1 every half WATCHDOG_USEC (the unit's WatchdogSec). Before READY=1 the pings
//     are unconditional: start-up is bounded by TimeoutStartSec and the sync loop does not
//     exist yet. After it, a ping is sent only while alive returns nil, so a wedged sync
//     loop stops the pings and systemd kills (SIGABRT: Go prints every goroutine's stack to
//     the journal) and restarts the agent; STATUS= then names the failure;
//   - STOPPING=1 when ctx ends or stop is called. Pods keep running (KillMode=process).
//
// ready and alive are called from one goroutine and must not block for long; a nil alive
// counts as always alive.
func startSystemd(ctx context.Context, ready, alive func() error, log *logrus.Entry) (stop func()) {
	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.WithError(err).Warn("ignoring a malformed systemd watchdog setting")
		watchdog = 0
	}
	n := &sdNotifier{
		send: func(state string) (bool, error) {
			// Keep NOTIFY_SOCKET: every message reads it. The plugins the agent runs inherit
			// it, which NotifyAccess=main makes harmless.
			return daemon.SdNotify(false, state)
		},
		ready:     ready,
		alive:     alive,
		log:       log.WithField("component", "systemd"),
		readyPoll: readyPollPeriod,
		watchdog:  watchdog,
	}
	return n.start(ctx)
}

// sdNotifier is the state of the one goroutine that talks to systemd.
type sdNotifier struct {
	send      func(state string) (sent bool, err error) // daemon.SdNotify
	ready     func() error
	alive     func() error
	log       *logrus.Entry
	readyPoll time.Duration
	watchdog  time.Duration // WATCHDOG_USEC; 0: no watchdog

	status      string // last STATUS= sent
	sendErr     bool   // a send failed and was logged; logged again only after a success
	withholding bool   // alive failed at the last ping, which was not sent
}

func (n *sdNotifier) start(parent context.Context) (stop func()) {
	// Probe with the first status: no NOTIFY_SOCKET means not under systemd (or not
	// Type=notify), and nothing else is ever sent.
	first := "STATUS=starting"
	if sent, err := n.send(first); !sent && err == nil {
		return func() {}
	} else if err != nil {
		n.log.WithError(err).Warn("cannot notify systemd")
		n.sendErr = true
	}
	n.status = "starting"
	n.log.WithField("watchdog", n.watchdog).Info("notifying systemd")
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.run(ctx)
	}()
	return func() { cancel(); <-done }
}

func (n *sdNotifier) run(ctx context.Context) {
	var watchdog <-chan time.Time
	if n.watchdog > 0 {
		t := time.NewTicker(n.watchdog / 2)
		defer t.Stop()
		watchdog = t.C
		n.notify("WATCHDOG=1")
	}
	poll := time.NewTicker(n.readyPoll)
	defer poll.Stop()
	readyC := poll.C
	isReady := n.checkReady()
	if isReady {
		readyC = nil
	}
	for {
		select {
		case <-ctx.Done():
			n.notify("STOPPING=1\nSTATUS=stopping; pods keep running")
			return
		case <-readyC:
			if n.checkReady() {
				isReady, readyC = true, nil
			}
		case <-watchdog:
			if !isReady {
				n.notify("WATCHDOG=1")
				continue
			}
			if err := n.checkAlive(); err != nil {
				if !n.withholding {
					n.log.WithError(err).Error("the agent is not alive; withholding systemd watchdog pings, so systemd restarts it")
					n.withholding = true
				}
				n.setStatus(fmt.Sprintf("not alive, withholding watchdog pings: %v", err))
				continue
			}
			if n.withholding {
				n.log.Info("the agent is alive again; systemd watchdog pings resume")
				n.withholding = false
			}
			n.setStatus("running")
			n.notify("WATCHDOG=1")
		}
	}
}

// checkReady sends READY=1 the first time ready returns nil, else the reason as STATUS=.
func (n *sdNotifier) checkReady() bool {
	if n.ready != nil {
		if err := n.ready(); err != nil {
			n.setStatus(err.Error())
			return false
		}
	}
	n.status = "running"
	n.notify("READY=1\nSTATUS=running")
	n.log.Info("told systemd the agent is ready")
	return true
}

func (n *sdNotifier) checkAlive() error {
	if n.alive == nil {
		return nil
	}
	return n.alive()
}

// setStatus sends STATUS= when it changed.
func (n *sdNotifier) setStatus(s string) {
	if s == n.status {
		return
	}
	n.status = s
	n.notify("STATUS=" + s)
}

func (n *sdNotifier) notify(state string) {
	_, err := n.send(state)
	switch {
	case err != nil && !n.sendErr:
		n.log.WithError(err).Warn("cannot notify systemd")
		n.sendErr = true
	case err == nil && n.sendErr:
		n.log.Info("notifying systemd again")
		n.sendErr = false
	}
}

// stderrIsJournal reports whether stderr is a journald stream: systemd then sets
// JOURNAL_STREAM to the stream's "device:inode", which must match stderr's own (a child that
// redirected stderr inherits the variable but not the stream).
func stderrIsJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return false
	}
	return dev == strconv.FormatUint(uint64(st.Dev), 10) && ino == strconv.FormatUint(st.Ino, 10)
}

// journalFormatter adapts the agent's log lines to journald: each line starts with the
// sd-daemon priority prefix ("<4>" for warning), which journald strips and records as the
// entry's PRIORITY, so `journalctl -u nodeagent -p warning` and the colours of journalctl
// work. In text format the timestamp is dropped, as journald stamps every entry itself;
// JSON keeps its own nanosecond timestamps, which event latencies are read from.
type journalFormatter struct {
	inner logrus.Formatter
}

// newJournalFormatter wraps the formatter newLogger chose; a *logrus.TextFormatter is
// replaced by one with the same quoting and field settings and no timestamp. (It cannot be
// copied: it holds a sync.Once.)
func newJournalFormatter(f logrus.Formatter) logrus.Formatter {
	if tf, ok := f.(*logrus.TextFormatter); ok {
		f = &logrus.TextFormatter{
			DisableTimestamp: true,
			DisableColors:    true, // journalctl colours by PRIORITY
			DisableQuote:     tf.DisableQuote,
			QuoteEmptyFields: tf.QuoteEmptyFields,
			DisableSorting:   tf.DisableSorting,
			SortingFunc:      tf.SortingFunc,
			FieldMap:         tf.FieldMap,
			CallerPrettyfier: tf.CallerPrettyfier,
		}
	}
	return &journalFormatter{inner: f}
}

// Format implements logrus.Formatter.
func (f *journalFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b, err := f.inner.Format(e)
	if err != nil {
		return nil, err
	}
	return append([]byte(journalPriority(e.Level)), b...), nil
}

// journalPriority is the syslog priority prefix of a logrus level.
func journalPriority(l logrus.Level) string {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return "<2>" // crit
	case logrus.ErrorLevel:
		return "<3>"
	case logrus.WarnLevel:
		return "<4>"
	case logrus.InfoLevel:
		return "<6>"
	default:
		return "<7>" // debug, trace
	}
}
