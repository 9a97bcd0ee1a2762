package probes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// A liveness probe that starts failing gets the container killed (politely: SIGTERM first)
// and restarted; the restart count goes up by one and the agent says why.
func TestLivenessFailureRestartsTheContainer(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	// timeoutSeconds 5: on a loaded machine a 1 s probe of a healthy server can time out.
	a.WriteManifest("live.yaml", serverPod("live", 5, nil, `    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 2
`))
	p := a.WaitRunning("live", startTimeout)
	first := *containerStatus(p, "server")

	// Healthy, it is left alone.
	consistently(t, 4*time.Second, func() (bool, string) {
		p := a.FindPod("live")
		cs := containerStatus(p, "server")
		return cs != nil && cs.RestartCount == 0 && cs.ContainerID == first.ContainerID, "a healthy container was restarted: " + describe(p)
	})

	execIn(t, a, "live", "server", "touch", "/tmp/unhealthy")
	failed := time.Now()
	// Killing the instance and creating and starting a new one takes containerd a while
	// under load.
	p = a.WaitPod("live", 60*time.Second, "restarted by its liveness probe", func(p *v1.Pod) bool {
		cs := containerStatus(p, "server")
		return cs != nil && cs.RestartCount == 1 && cs.State.Running != nil && cs.ContainerID != first.ContainerID
	})
	t.Logf("restarted %v after /healthz started failing", time.Since(failed).Round(100*time.Millisecond))
	cs := containerStatus(p, "server")
	if last := cs.LastTerminationState.Terminated; last == nil || last.ContainerID != first.ContainerID {
		t.Errorf("lastState.terminated = %+v, want the killed instance %s", last, first.ContainerID)
	} else {
		t.Logf("lastState.terminated: exit %d, reason %q, message %q", last.ExitCode, last.Reason, last.Message)
	}
	t.Logf("agent: %s", a.WaitLog(30*time.Second, "Liveness probe failed", "server"))

	// The killed instance got SIGTERM before it went; its log stays as the previous one.
	prev := filepath.Join(a.LogsDir, fmt.Sprintf("default_%s_%s", p.Name, p.UID), "server", "0.log")
	if b, err := os.ReadFile(prev); err != nil || !strings.Contains(string(b), "got SIGTERM") {
		t.Errorf("the killed instance's log %s has no \"got SIGTERM\" (%v):\n%s", prev, err, b)
	}

	// The new instance has no /tmp/unhealthy: it passes and stays.
	consistently(t, 4*time.Second, func() (bool, string) {
		p := a.FindPod("live")
		cs := containerStatus(p, "server")
		return cs != nil && cs.RestartCount == 1 && cs.State.Running != nil, "the healthy new instance was restarted: " + describe(p)
	})
}

// Readiness follows the probe both ways, the pod's Ready and ContainersReady conditions with
// it, and a failing readiness probe never restarts anything.
func TestReadinessFollowsTheProbe(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("ready.yaml", serverPod("ready", 2, nil, `    readinessProbe:
      httpGet: {path: /ready, port: 8080}
      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 1
`))
	a.WaitPod("ready", startTimeout, readiness(false), readyIs(false))
	consistently(t, 3*time.Second, func() (bool, string) {
		p := a.FindPod("ready")
		return p != nil && readyIs(false)(p), "ready although /ready answers 503: " + describe(p)
	})

	for _, want := range []bool{true, false, true} {
		if want {
			execIn(t, a, "ready", "server", "touch", "/tmp/ready")
		} else {
			execIn(t, a, "ready", "server", "rm", "-f", "/tmp/ready")
		}
		flipped := time.Now()
		a.WaitPod("ready", flipTimeout, readiness(want), readyIs(want))
		t.Logf("%s %v after /ready changed", readiness(want), time.Since(flipped).Round(100*time.Millisecond))
	}
	if cs := containerStatus(a.FindPod("ready"), "server"); cs == nil || cs.RestartCount != 0 {
		t.Fatalf("readiness failures restarted the container: %+v", cs)
	}
}

// A startup probe keeps the liveness probe off until it passes: a server that listens only
// after 15 s is not killed by a one-strike liveness probe, reports started=false until the
// startup probe passes and started=true (and ready) after.
func TestStartupProbeHoldsOffLiveness(t *testing.T) {
	t.Parallel()
	const listenAfter = 15 * time.Second
	a := framework.StartAgent(t, framework.AgentOptions{})
	// timeoutSeconds 5 on both: a probe slowed down by a loaded machine must not count as a
	// failure (for the one-strike liveness probe, a restart). The startup probe allows 40
	// failures, far more than the 15 s of closed ports.
	a.WriteManifest("slowstart.yaml", serverPod("slowstart", 2, []string{"-startup-delay", listenAfter.String()}, `    startupProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 40
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 1
`))

	// One watch from the start, so the not-started state (which lasts only until the server
	// listens) is seen whenever the agent reports it, however late the container starts.
	var notStarted *v1.Pod // first seen running, not started, not ready
	var startedSeen time.Time
	framework.Eventually(t, startTimeout+2*listenAfter, func() (bool, string) {
		p := a.FindPod("slowstart")
		cs := containerStatus(p, "server")
		if cs != nil && cs.RestartCount != 0 {
			t.Fatalf("restarted before its startup probe passed: %s", describe(p))
		}
		if notStarted == nil && cs != nil && cs.State.Running != nil && cs.Started != nil && !*cs.Started && !cs.Ready &&
			condition(p, v1.PodReady) == v1.ConditionFalse {
			notStarted = p
		}
		ok := cs != nil && cs.Started != nil && *cs.Started && readyIs(true)(p)
		if ok {
			startedSeen = time.Now()
		}
		return ok, "not started and ready: " + describe(p)
	})
	if notStarted == nil {
		t.Fatalf("never reported running with started=false before its startup probe passed")
	}
	t.Logf("first seen not started: %s", describe(notStarted))
	c := runningContainer(t, a, "slowstart", "server")
	started := criStartedAt(t, c.Id)
	took := startedSeen.Sub(started)
	t.Logf("started and ready %v after the container started", took.Round(100*time.Millisecond))
	if took < listenAfter-500*time.Millisecond {
		t.Errorf("started=true %v after the container started, but the server listens only after %v", took, listenAfter)
	}

	// The liveness probe has taken over and passes: still the first instance at 25 s (10 s
	// of one-strike liveness probes).
	consistently(t, time.Until(started.Add(listenAfter+10*time.Second)), func() (bool, string) {
		p := a.FindPod("slowstart")
		cs := containerStatus(p, "server")
		return cs != nil && cs.RestartCount == 0 && cs.State.Running != nil && cs.Ready, "after the startup probe passed: " + describe(p)
	})
}

// Each probe handler passes and fails for real, and readiness follows it: the test flips the
// server's answer with a file and waits for Ready to follow, there and back.
func TestEveryHandlerPassesAndFails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		spec  string // more container YAML: ports (if any) and the readinessProbe's handler
		file  string // creating it flips the answer; "" never passes
		ready bool   // the answer while file is absent
	}{
		{"exec", `    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
`, "/tmp/ready", false},
		{"tcpSocket", `    readinessProbe:
      tcpSocket: {port: 7070}
`, "/tmp/no-tcp", true},
		{"grpc", `    readinessProbe:
      grpc: {port: 9090, service: nodeagent.test}
`, "/tmp/grpc-not-serving", true},
		// A port may be named after one of the container's ports.
		{"httpGet-named-port", `    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      httpGet: {path: /ready, port: http}
`, "/tmp/ready", false},
		// A redirect to the same host is followed: the answer is /ready's.
		{"httpGet-redirect", `    readinessProbe:
      httpGet: {path: "/redirect?to=/ready", port: 8080}
`, "/tmp/ready", false},
		// The health server answers NOT_FOUND for a service it does not know: a failure.
		{"grpc-unknown-service", `    readinessProbe:
      grpc: {port: 9090, service: no.such.service}
`, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := framework.StartAgent(t, framework.AgentOptions{})
			// timeoutSeconds 5: a slow answer on a loaded machine must not pass for a failure.
			a.WriteManifest("h.yaml", serverPod("h", 2, nil, tc.spec+`      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 1
`))
			a.WaitPod("h", startTimeout, readiness(tc.ready), readyIs(tc.ready))
			if !tc.ready {
				// Not ready could also mean "not probed yet": see it stay so while it fails.
				consistently(t, 3*time.Second, func() (bool, string) {
					p := a.FindPod("h")
					return p != nil && readyIs(false)(p), "ready while the probe fails: " + describe(p)
				})
			}
			if tc.file == "" {
				return
			}
			for _, want := range []bool{!tc.ready, tc.ready} {
				if want != tc.ready {
					execIn(t, a, "h", "server", "touch", tc.file)
				} else {
					execIn(t, a, "h", "server", "rm", "-f", tc.file)
				}
				flipped := time.Now()
				a.WaitPod("h", flipTimeout, readiness(want), readyIs(want))
				t.Logf("%s %v after the flip", readiness(want), time.Since(flipped).Round(100*time.Millisecond))
			}
			if cs := containerStatus(a.FindPod("h"), "server"); cs == nil || cs.RestartCount != 0 {
				t.Fatalf("readiness failures restarted the container: %+v", cs)
			}
		})
	}
}

// timeoutSeconds is kept: an answer that takes 3 s fails a probe that waits 1 s, every time,
// and passes one that waits 10 s (ample margin for a loaded machine, where the 3 s answer may
// take longer to arrive).
func TestProbeTimeoutIsKept(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	slow := func(timeout int) string {
		return fmt.Sprintf(`    readinessProbe:
      httpGet: {path: "/slow?d=3s", port: 8080}
      timeoutSeconds: %d
      periodSeconds: 1
      failureThreshold: 1
`, timeout)
	}
	a.WriteManifest("timeout1.yaml", serverPod("timeout1", 2, nil, slow(1)))
	a.WriteManifest("timeout10.yaml", serverPod("timeout10", 2, nil, slow(10)))

	a.WaitPod("timeout10", startTimeout, readiness(true), readyIs(true))
	ready := time.Now()
	if took := ready.Sub(criStartedAt(t, runningContainer(t, a, "timeout10", "server").Id)); took < 3*time.Second-200*time.Millisecond {
		t.Errorf("ready %v after the container started, sooner than the 3 s answer", took)
	}

	a.WaitPod("timeout1", startTimeout, readiness(false), readyIs(false))
	consistently(t, 8*time.Second, func() (bool, string) {
		p := a.FindPod("timeout1")
		cs := containerStatus(p, "server")
		return p != nil && readyIs(false)(p) && cs.RestartCount == 0, "with a 1 s timeout on a 3 s answer: " + describe(p)
	})
	// The slow answers of one pod hold nothing else up: the other stays ready throughout.
	if p := a.FindPod("timeout10"); p == nil || !readyIs(true)(p) {
		t.Fatalf("timeout10 lost its readiness: %s", describe(p))
	}
}
