package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// startSample is one pod start: from t0 (just before the manifest rename, or just before
// RunPodSandbox for the floor) to the last container's StartedAt.
type startSample struct {
	pod          string
	t0, started  time.Time
	sandboxID    string
	containerIDs []string
}

func (s startSample) latency() time.Duration { return s.started.Sub(s.t0) }

// podStart measures pod start through the agent against the floor (direct CRI calls), one
// of each in turn (A, F, A, F, ...) so machine noise hits both alike. Each pod is removed and
// waited gone before the next sample: every sample starts on the same quiet node. One
// warm-up pair runs first and is not counted (the first sandbox creates the CNI bridge).
func (b *bench) podStart(ctx context.Context) error {
	a, err := b.startAgent(ctx, "bench-start", "--log-format", "json", "--log-level", "debug")
	if err != nil {
		return err
	}
	defer a.stop()
	fl, err := newFloor(ctx, b.rt, b.tb.image, filepath.Join(b.tb.dir, "floor", "pod-logs"))
	if err != nil {
		return err
	}

	var agentS, floorS []startSample
	for i := -1; i < b.opts.pods; i++ {
		as, err := b.agentPodStart(ctx, a, fmt.Sprintf("start-a%02d", i+1))
		if err != nil {
			return err
		}
		fs, err := b.floorPodStart(ctx, fl, fmt.Sprintf("start-f%02d-floor", i+1))
		if err != nil {
			return err
		}
		if i < 0 {
			progress("warm-up: agent %s, floor %s (not counted)", ms(as.latency()), ms(fs.latency()))
			continue
		}
		agentS, floorS = append(agentS, as), append(floorS, fs)
		progress("pod start %d/%d: agent %s, floor %s", i+1, b.opts.pods, ms(as.latency()), ms(fs.latency()))
	}
	b.report.podStart(agentS, floorS)
	b.report.note("pod start: samples interleaved agent, floor, agent, ...; each pod removed and waited gone before the next " +
		"(manifest deleted / StopPodSandbox+RemovePodSandbox), so every start is on an empty node; one warm-up pair not counted")
	b.report.breakdown = podStartBreakdown(b.tb.env["CONTAINERD_LOG"], a.logPath, agentS, floorS)
	if b.report.breakdown == nil {
		b.report.note("pod start by step: containerd's log (%s) does not show the CRI calls of every sample", b.tb.env["CONTAINERD_LOG"])
	}
	return nil
}

// agentPodStart renames a manifest in, waits until the runtime runs its container, takes
// the sample from the runtime's StartedAt, then deletes the manifest and waits until the pod
// is gone.
func (b *bench) agentPodStart(ctx context.Context, a *agent, name string) (startSample, error) {
	file := name + ".yaml"
	pod := a.podName(name)
	t0, err := a.writeManifest(file, podManifest(name, b.tb.image, sleepCommand))
	if err != nil {
		return startSample{}, err
	}
	cs, err := waitRunning(ctx, b.rt, pod, 1, time.Minute)
	if err != nil {
		return startSample{}, fmt.Errorf("%w%s", err, a.tail(10))
	}
	started, err := lastStarted(ctx, b.rt, cs)
	if err != nil {
		return startSample{}, err
	}
	s := startSample{pod: pod, t0: t0, started: started, sandboxID: cs[0].PodSandboxId}
	for _, c := range cs {
		s.containerIDs = append(s.containerIDs, c.Id)
	}
	if err := a.removeManifest(file); err != nil {
		return startSample{}, err
	}
	if err := waitPodGone(ctx, b.rt, a, pod, time.Minute); err != nil {
		return startSample{}, err
	}
	return s, nil
}

// floorPodStart runs one floor pod. While it starts, the same ListContainers poll runs as
// during an agent sample, so both see the same extra load on the runtime.
func (b *bench) floorPodStart(ctx context.Context, fl *floor, name string) (startSample, error) {
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		_, _ = waitRunning(pollCtx, b.rt, name, 1, time.Minute)
	}()
	s, err := fl.start(ctx, name)
	stopPoll()
	<-polled
	if err != nil {
		return startSample{}, err
	}
	if err := fl.remove(ctx, s); err != nil {
		return startSample{}, fmt.Errorf("floor pod %s: remove: %w", name, err)
	}
	return s, nil
}
