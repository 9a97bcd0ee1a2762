package main

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// eventModes are the runtime event paths measured, each with its own agent.
var eventModes = []string{"cri", "containerd"}

// exitDetection measures, for each runtime event path, how soon the agent hears of a
// container exit and how soon the first restart (which has no backoff) runs.
func (b *bench) exitDetection(ctx context.Context) error {
	if b.opts.exits == 0 {
		return nil
	}
	if !b.hasFlags(flagRuntimeEvents, flagBackoffInitial, flagBackoffMax) {
		for _, mode := range eventModes {
			b.report.skipped(fmt.Sprintf("exit detection (%s events)", mode),
				fmt.Sprintf("the agent has no %s / %s / %s flags yet", flagRuntimeEvents, flagBackoffInitial, flagBackoffMax))
		}
		return nil
	}
	b.report.note("exits: one fresh pod per sample (sh -c 'sleep 1; exit 1', restartPolicy Always, agent flags %s 1s %s 2s); "+
		"notified = time of the agent's \"runtime event\" stopped line - FinishedAt; restart = StartedAt of attempt 1 - FinishedAt of attempt 0",
		flagBackoffInitial, flagBackoffMax)
	for _, mode := range eventModes {
		if err := b.exitMode(ctx, mode); err != nil {
			return fmt.Errorf("%s events: %w", mode, err)
		}
	}
	return nil
}

// exitMode runs -exits crashing pods, one at a time, on an agent using the given event path.
// Each pod's container exits 1 s after it starts; the agent restarts it at once (the first
// restart has no backoff). Times come from the runtime (FinishedAt of the crashed instance,
// StartedAt of the next) and from the agent's "runtime event" log line.
func (b *bench) exitMode(ctx context.Context, mode string) error {
	a, err := b.startAgent(ctx, "bench-exit-"+mode,
		"--log-format", "json", "--log-level", "debug",
		flagRuntimeEvents, mode,
		flagBackoffInitial, "1s", flagBackoffMax, "2s")
	if err != nil {
		return err
	}
	defer a.stop()
	alog := newAgentLog(a.logPath)

	var detect, restart samples
	missed := 0
	for i := 0; i < b.opts.exits; i++ {
		name := fmt.Sprintf("crash%02d", i)
		file := name + ".yaml"
		pod := a.podName(name)
		if _, err := a.writeManifest(file, podManifest(name, b.tb.image, crashCommand)); err != nil {
			return err
		}
		crashed, next, err := waitFirstRestart(ctx, b.rt, pod)
		if err != nil {
			return fmt.Errorf("%w%s", err, a.tail(10))
		}
		finished := time.Unix(0, crashed.FinishedAt)
		restart = append(restart, time.Unix(0, next.StartedAt).Sub(finished))

		msg := fmt.Sprintf("%s exit %d/%d: restarted %s after the exit", mode, i+1, b.opts.exits, ms(restart[len(restart)-1]))
		ev, err := alog.runtimeEvent(ctx, crashed.Id, "stopped", 10*time.Second)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			missed++
			msg += ", no runtime event logged"
		default:
			detect = append(detect, ev.time.Sub(finished))
			msg += fmt.Sprintf(", agent notified %s after", ms(detect[len(detect)-1]))
		}
		progress("%s", msg)

		if err := a.removeManifest(file); err != nil {
			return err
		}
		if err := waitPodGone(ctx, b.rt, a, pod, time.Minute); err != nil {
			return err
		}
	}
	b.report.exits(mode, detect, restart, missed, alog.coarse)
	return nil
}

// waitFirstRestart waits until the pod's container has crashed once and its next instance
// (attempt 1) has started, and returns both statuses. The crashed instance is kept by the
// agent until the one after next starts, seconds later, so the poll finds both.
func waitFirstRestart(ctx context.Context, rt *cri.Client, pod string) (crashed, next *runtimeapi.ContainerStatus, err error) {
	var first, second *runtimeapi.Container
	err = poll(ctx, time.Minute, pollInterval, func() (bool, error) {
		cs, err := rt.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{cri.LabelPodName: pod}})
		if err != nil {
			return false, err
		}
		first, second = nil, nil
		for _, c := range cs {
			switch c.GetMetadata().GetAttempt() {
			case 0:
				first = c
			case 1:
				second = c
			}
		}
		return second != nil && second.State != runtimeapi.ContainerState_CONTAINER_CREATED, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("pod %s: waiting for the first restart: %w", pod, err)
	}
	if first == nil {
		return nil, nil, fmt.Errorf("pod %s: the crashed instance (attempt 0) was removed before it could be read", pod)
	}
	st0, err := rt.ContainerStatus(ctx, first.Id, false)
	if err != nil {
		return nil, nil, err
	}
	st1, err := rt.ContainerStatus(ctx, second.Id, false)
	if err != nil {
		return nil, nil, err
	}
	crashed, next = st0.GetStatus(), st1.GetStatus()
	if crashed.FinishedAt == 0 || crashed.ExitCode != 1 || next.StartedAt == 0 {
		return nil, nil, fmt.Errorf("pod %s: unexpected statuses: attempt 0 exit code %d finished at %d, attempt 1 started at %d",
			pod, crashed.ExitCode, crashed.FinishedAt, next.StartedAt)
	}
	return crashed, next, nil
}
