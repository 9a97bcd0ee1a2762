package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
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
		pods:  n, rss: after.rss, hwm: after.hwm, anon: after.anon, threads: after.threads, cpu: cpuPercent(before, after), window: after.at.Sub(before.at),
		target: fmt.Sprintf("<= %.0f %% CPU", probeTargetCPU),
		result: mark(cpuPercent(before, after) <= probeTargetCPU),
	}
	b.report.footprint = append(b.report.footprint, row)
	b.report.note("probes: %d busybox httpd pods, each with an httpGet readiness probe every 1 s; CPU of the agent process over the window", n)
	progress("probes: %d pods: RSS %s, CPU %.2f %% of a core", n, mib(row.rss), row.cpu)

	// The floor: the same GETs, each on a new connection as the kubelet's prober makes them,
	// by the simplest loop, with the agent stopped (pods keep running without it).
	pods, err := a.pods()
	if err != nil {
		return err
	}
	var ips []string
	for _, p := range pods {
		if p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	a.stopProcess()
	progress("probes: floor: %d plain HTTP GETs per second from the bench itself for %s", len(ips), b.opts.probeWin)
	floor, failed, err := probeFloor(ctx, ips, b.opts.probeWin)
	if err != nil {
		return err
	}
	b.report.footprint = append(b.report.footprint, footprintRow{
		label: fmt.Sprintf("floor: %d plain GETs/s, no agent", len(ips)),
		pods:  len(ips), cpu: floor, window: b.opts.probeWin,
		target: fmt.Sprintf("agent/floor %.2f", row.cpu/floor),
	})
	b.report.note("probes floor: a loop in the bench process dials each pod IP once a second, writes a GET with Connection: close, reads to EOF and closes (%d of the GETs failed); its CPU is mostly the kernel's TCP setup over the veth and bridge, which any prober that opens a connection per run pays", failed)
	progress("probes: floor: CPU %.2f %% of a core (%d failed GETs)", floor, failed)
	return nil
}

// probeFloor GETs / on port 8080 of each IP once a second for window and returns the bench
// process's CPU over the window, in % of a core, and how many GETs failed.
func probeFloor(ctx context.Context, ips []string, window time.Duration) (cpu float64, failed int64, err error) {
	if len(ips) == 0 {
		return 0, 0, fmt.Errorf("probe floor: no pod IPs")
	}
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	before, err := readProc(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	var (
		wg    sync.WaitGroup
		fails atomic.Int64
	)
	for i, ip := range ips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the first runs over the period, as the agent's jitter does.
			if sleepCtx(ctx, time.Duration(i)*time.Second/time.Duration(len(ips))) != nil {
				return
			}
			addr := net.JoinHostPort(ip, "8080")
			req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				if !floorGet(addr, req) {
					fails.Add(1)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
	after, err := readProc(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	return cpuPercent(before, after), fails.Load(), nil
}

func floorGet(addr string, req []byte) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(req); err != nil {
		return false
	}
	n, err := io.Copy(io.Discard, c)
	return err == nil && n > 0
}
