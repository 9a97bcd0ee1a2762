package prober

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/utils/clock"
)

// worker runs one probe of one container instance in its own goroutine.
type worker struct {
	m       *Manager
	target  Target
	spec    settings
	handler handler // nil: the target is ignored and has no goroutine
	log     *logrus.Entry
	ctx     context.Context // cancelled when the target goes away; bounds every run
	cancel  context.CancelFunc
	done    chan struct{} // closed when the goroutine has exited

	// started is made for startup probes only: closed once the probe succeeded, or once it
	// was removed while its container's other probes stay. gate is the started channel of
	// the container's startup probe, for its liveness and readiness probes; set before the
	// goroutine starts.
	started     chan struct{}
	startedOnce sync.Once
	gate        <-chan struct{}

	// guarded by m.mu
	seen    uint64 // the last SyncPod pass that listed the target
	removed bool
	result  Result
	message string

	// counters are the probe's prober_probe_total series; nil without metrics. Incremented
	// under m.mu (Manager.count), so removal and counting do not race.
	counters *probeCounters

	// owned by the goroutine
	last    Result // outcome of the latest counted run
	streak  int    // how many counted runs in a row had that outcome
	warning string // the last success-with-warning logged, so that each is logged once
}

// newWorker prepares the probe of t; an invalid target gets no handler and is only logged.
func (m *Manager) newWorker(t *Target) *worker {
	w := &worker{
		m:      m,
		target: *t,
		result: initialResult(t.Kind),
		last:   Unknown,
		done:   make(chan struct{}),
		log: m.log.WithFields(logrus.Fields{
			"pod": t.PodRef, "uid": t.PodUID, "container": t.ContainerName, "containerID": t.ContainerID, "probe": t.Kind,
		}),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	switch {
	case t.Kind != Liveness && t.Kind != Readiness && t.Kind != Startup:
		w.log.Error("unknown probe kind; ignoring the probe")
	case t.ContainerID == "":
		w.log.Error("probe target has no container ID; ignoring the probe")
	case t.Probe == nil:
		w.log.Error("probe target has no probe; ignoring the probe")
	default:
		w.spec = settingsOf(t.Probe, t.Kind)
		w.handler = m.newHandler(t)
		if w.handler == nil {
			w.log.Error("probe has no handler (exec, httpGet, tcpSocket or grpc); ignoring it")
		} else {
			w.counters = m.cfg.Metrics.countersFor(t)
		}
	}
	if w.handler == nil {
		close(w.done)
		return w
	}
	if t.Kind == Startup {
		w.started = make(chan struct{})
	}
	return w
}

// run waits for the first run, then probes every period until the target goes away or the
// probe has nothing more to say. It only waits; probeOnce does the work.
func (w *worker) run() {
	defer w.m.wg.Done()
	defer close(w.done)
	clk := w.m.cfg.Clock
	now := clk.Now()
	start := w.target.StartedAt
	if start.IsZero() {
		start = now
	}
	notBefore := start.Add(w.spec.initialDelay)
	due := later(notBefore, now).Add(time.Duration(w.m.jitter(int64(w.spec.period))))

	if w.gate != nil {
		select {
		case <-w.ctx.Done():
			return
		case <-w.gate:
		}
		if w.ctx.Err() != nil {
			return
		}
		// As the kubelet: readiness is checked as soon as the container has started,
		// liveness on its next period.
		now = clk.Now()
		due = later(notBefore, now)
		if w.target.Kind == Liveness {
			due = later(notBefore, now.Add(w.spec.period))
		}
	}

	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if wait := due.Sub(clk.Now()); wait > 0 {
			if timer == nil {
				timer = clk.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-w.ctx.Done():
				return
			case <-timer.C():
			}
		}
		if !w.probeOnce(w.ctx) {
			return
		}
		due = nextDue(due, w.spec.period, clk.Now())
	}
}

// probeOnce runs the probe once, applies the thresholds and reports a changed settled
// result. It returns false when the probe has nothing more to say about this container:
// startup succeeded, or liveness or startup failed (the pod worker kills the container and
// its successor is a new target), or the target went away.
func (w *worker) probeOnce(ctx context.Context) (more bool) {
	if ctx.Err() != nil {
		return false
	}
	out := w.handler.probe(ctx, w.spec.timeout)
	if ctx.Err() != nil {
		return false // cancelled mid-run: the outcome means nothing
	}
	w.m.count(w, out.result)
	switch out.result {
	case Unknown:
		w.debug(out, "probe could not run; not counted")
		return true
	case Success:
		if out.message != w.warning {
			if out.message != "" {
				w.log.WithField("message", out.message).Warn("probe succeeded with a warning")
			}
			w.warning = out.message
		}
		out.message = ""
	case Failure:
		w.debug(out, "probe failed")
		if w.m.cfg.OnFailure != nil {
			w.m.cfg.OnFailure(w.update(Failure, out.message))
		}
	}

	if out.result == w.last {
		w.streak++
	} else {
		w.last, w.streak = out.result, 1
	}
	threshold := w.spec.success
	if out.result == Failure {
		threshold = w.spec.failure
	}
	if w.streak < threshold {
		return true
	}
	w.streak = threshold // keeps counting cheap and bounded once settled

	if w.m.settle(w, out.result, out.message) {
		entry := w.log.WithField("result", out.result)
		if out.message != "" {
			entry = entry.WithField("message", out.message)
		}
		entry.Info("probe result changed")
		w.m.cfg.OnChange(w.update(out.result, out.message))
	}
	switch {
	case out.result == Success && w.target.Kind == Startup:
		w.markStarted()
		return false
	case out.result == Failure && w.target.Kind != Readiness:
		return false
	}
	return true
}

func (w *worker) update(r Result, msg string) Update {
	return Update{
		PodUID:        w.target.PodUID,
		ContainerID:   w.target.ContainerID,
		ContainerName: w.target.ContainerName,
		Kind:          w.target.Kind,
		Result:        r,
		Message:       msg,
	}
}

func (w *worker) debug(out outcome, msg string) {
	if w.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		w.log.WithField("message", out.message).Debug(msg)
	}
}

// markStarted releases the container's liveness and readiness probes.
func (w *worker) markStarted() {
	w.startedOnce.Do(func() { close(w.started) })
}

// nextDue is the first multiple of period after the run due at due that is not already
// past: a run that overran its period skips the runs it missed rather than bunching them.
func nextDue(due time.Time, period time.Duration, now time.Time) time.Time {
	due = due.Add(period)
	if late := now.Sub(due); late > 0 {
		due = due.Add((late/period + 1) * period)
	}
	return due
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
