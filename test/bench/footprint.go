package main

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// footprint measures the agent's memory and CPU at each pod count of -footprint, adding pods
// to the same agent as it goes. The agent runs as it would in production (default flags:
// info level, text log); each window starts once the runtime runs every pod and the agent's
// /pods shows them all Running, and nothing talks to the agent during the window.
func (b *bench) footprint(ctx context.Context) error {
	if len(b.opts.footprint) == 0 {
		return nil
	}
	a, err := b.startAgent(ctx, "bench-fp")
	if err != nil {
		return err
	}
	defer a.stop()

	b.report.note("footprint: one agent with default flags, pods added to it; the window starts when /pods shows every pod Running; " +
		"CPU = utime+stime from /proc/PID/stat over the window, RSS = VmRSS (peak = VmHWM, private = RssAnon: RSS less the binary's file pages; threads from /proc/PID/status) at its end")
	have := 0
	for _, n := range b.opts.footprint {
		for i := have; i < n; i++ {
			name := fmt.Sprintf("fp%03d", i)
			if _, err := a.writeManifest(name+".yaml", podManifest(name, b.tb.image, sleepCommand)); err != nil {
				return err
			}
		}
		have = n
		progress("footprint: waiting for %d pods to run", n)
		if err := waitAllRunning(ctx, b.rt, a, n, 2*time.Minute+time.Duration(n)*2*time.Second); err != nil {
			return err
		}
		progress("footprint: %d pods running; agent idle for %s", n, b.opts.idle)
		before, err := readProc(a.pid())
		if err != nil {
			return err
		}
		if err := sleepCtx(ctx, b.opts.idle); err != nil {
			return err
		}
		after, err := readProc(a.pid())
		if err != nil || a.exited() {
			return fmt.Errorf("agent exited during the idle window:%s", a.tail(10))
		}
		row := footprintRow{pods: n, rss: after.rss, hwm: after.hwm, anon: after.anon, threads: after.threads, cpu: cpuPercent(before, after), window: after.at.Sub(before.at)}
		if n >= targetPods {
			row.target = fmt.Sprintf("<= %s, <= %.0f %%", mib(targetRSS), targetCPU)
			switch rssOK, cpuOK := row.rss <= targetRSS, row.cpu <= targetCPU; {
			case rssOK && cpuOK:
				row.result = mark(true)
			case !rssOK && !cpuOK:
				row.result = mark(false) + " (RSS, CPU)"
			case !rssOK:
				row.result = mark(false) + " (RSS)"
			default:
				row.result = mark(false) + " (CPU)"
			}
		}
		b.report.footprint = append(b.report.footprint, row)
		progress("footprint: %d pods: RSS %s, CPU %.2f %% of a core", n, mib(row.rss), row.cpu)
	}
	return nil
}

// waitAllRunning waits until the runtime runs n containers of the agent's node and the agent
// reports n pods Running with every container ready.
func waitAllRunning(ctx context.Context, rt *cri.Client, a *agent, n int, timeout time.Duration) error {
	running := 0
	err := poll(ctx, timeout, 250*time.Millisecond, func() (bool, error) {
		if a.exited() {
			return false, fmt.Errorf("agent exited:%s", a.tail(10))
		}
		cs, err := rt.ListContainers(ctx, &runtimeapi.ContainerFilter{
			State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			LabelSelector: map[string]string{cri.LabelNodeName: a.node},
		})
		if err != nil {
			return false, err
		}
		if len(cs) < n {
			return false, nil
		}
		pods, err := a.pods()
		if err != nil {
			return false, err
		}
		running = 0
		for _, p := range pods {
			if testbed.PodRunningReady(&p) {
				running++
			}
		}
		return running == n, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d pods to run (agent reports %d Running): %w", n, running, err)
	}
	return nil
}
