package main

import (
	"context"
	"fmt"
	"time"
)

// probeTargetCPU is the target for 50 pods with a 1 s HTTP readiness probe.
const probeTargetCPU = 3.0 // % of a core

// probeManifest is a busybox httpd pod with a 1 s HTTP readiness probe on it.
func probeManifest(name, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, labels: {app: bench}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: %s
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    readinessProbe:
      httpGet: {path: /, port: 8080}
      periodSeconds: 1
`, name, benchContainer, image)
}

// probeLoad measures the agent's CPU while it probes -probe-pods pods over HTTP every second:
// the cost of probing itself, since nothing else happens in the window.
func (b *bench) probeLoad(ctx context.Context) error {
	n := b.opts.probePods
	if n == 0 {
		return nil
	}
	a, err := b.startAgent(ctx, "bench-probes")
	if err != nil {
		return err
	}
	defer a.stop()
	for i := range n {
		name := fmt.Sprintf("pr%03d", i)
		if _, err := a.writeManifest(name+".yaml", probeManifest(name, b.tb.image)); err != nil {
			return err
		}
	}
	progress("probes: waiting for %d probed pods to be ready", n)
	if err := waitAllRunning(ctx, b.rt, a, n, 2*time.Minute+time.Duration(n)*2*time.Second); err != nil {
		return err
	}
	progress("probes: %d pods ready; measuring the agent for %s", n, b.opts.probeWin)
	before, err := readProc(a.pid())
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, b.opts.probeWin); err != nil {
		return err
	}
	after, err := readProc(a.pid())
	if err != nil || a.exited() {
		return fmt.Errorf("agent exited during the probe window:%s", a.tail(10))
	}
	row := footprintRow{
		label: fmt.Sprintf("%d pods, 1 s HTTP readiness", n),
		pods:  n, rss: after.rss, hwm: after.hwm, anon: after.anon, cpu: cpuPercent(before, after), window: after.at.Sub(before.at),
		target: fmt.Sprintf("<= %.0f %% CPU", probeTargetCPU),
		result: mark(cpuPercent(before, after) <= probeTargetCPU),
	}
	b.report.footprint = append(b.report.footprint, row)
	b.report.note("probes: %d busybox httpd pods, each with an httpGet readiness probe every 1 s; CPU of the agent process over the window", n)
	progress("probes: %d pods: RSS %s, CPU %.2f %% of a core", n, mib(row.rss), row.cpu)
	return nil
}
