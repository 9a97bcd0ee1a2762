package restart

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// With a 1 s initial backoff and an 8 s cap, a container that fails at once is restarted at
// once, then after 1 s, 2 s, 4 s: the gaps between an exit and the next start double.
func TestAlwaysRestartsWithDoublingDelay(t *testing.T) {
	t.Parallel()
	for _, mode := range eventModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			a := agentWith(t, mode)
			rec := record(t, a, "crash", "main")
			a.WriteManifest("crash.yaml", pod("crash", "Always", "exit 1"))

			var ins []instance
			framework.Eventually(t, 90*time.Second, func() (bool, string) {
				ins = rec.instances()
				ok := len(ins) >= 5
				for i := 0; ok && i < 5; i++ {
					ok = !ins[i].started.IsZero() && (i == 4 || !ins[i].finished.IsZero())
				}
				for i := 0; ok && i < 5; i++ {
					ok = !ins[i].created.IsZero()
				}
				return ok, fmt.Sprintf("%d instances seen, want 5 started and 4 exited", len(ins))
			})
			// The agent's decisions are judged so that a loaded machine cannot fail them:
			//  - no restart comes before its backoff: the runtime created the next instance at
			//    least that long after the exit (a slow containerd only makes the gap longer);
			//  - the back-off the agent announces while the container waits doubles (seen
			//    whenever the wait lasted longer than the status poll);
			//  - no restart waits for the resync (60 s) or the relist (5 min), which is what a
			//    lost exit event or wake-up would cost. The slack above the backoff is
			//    containerd's: CI saw a stalled containerd finish a CreateContainer 8 s late.
			want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second}
			const slack = 20 * time.Second
			for i, w := range want {
				gap := ins[i+1].created.Sub(ins[i].finished)
				t.Logf("restart %d: created %v after the exit, started %v after it (backoff %v)", i+1,
					gap.Round(time.Millisecond), ins[i+1].started.Sub(ins[i].finished).Round(time.Millisecond), w)
				if ins[i+1].restarts != ins[i].restarts+1 {
					t.Errorf("restart counts %d then %d", ins[i].restarts, ins[i+1].restarts)
				}
				switch {
				case gap < w-100*time.Millisecond:
					t.Errorf("restart %d came %v after the exit, before its %v backoff", i+1, gap, w)
				case gap > w+slack:
					t.Errorf("restart %d came %v after the exit, for a %v backoff: was the exit event or the wake-up lost?", i+1, gap, w)
				}
			}
			announced := rec.backoffs()
			t.Logf("back-offs announced, by restart count: %v", announced)
			if b, ok := announced[0]; ok {
				t.Errorf("the first restart must be immediate, but the agent announced a %s back-off", b)
			}
			for restarts, w := range map[int32]string{1: "1s", 2: "2s", 3: "4s"} {
				if b, ok := announced[restarts]; ok && b != w {
					t.Errorf("after %d restarts the agent announced a %s back-off, want %s", restarts, b, w)
				}
			}
			if len(announced) == 0 {
				t.Errorf("the container was never seen in CrashLoopBackOff")
			}
			p := a.FindPod("crash")
			if p == nil || p.Status.Phase != v1.PodRunning {
				t.Fatalf("an Always pod must stay Running, got %v", p)
			}
			// Dead instances are collected: the current one and the previous (whose log
			// serves `logs --previous`) stay, older ones go with their log files.
			// (A restart briefly holds three: the new one starts before the oldest goes.)
			framework.Eventually(t, 30*time.Second, func() (bool, string) {
				n := len(a.Containers(map[string]string{cri.LabelPodUID: string(p.UID)}))
				logs, _ := filepath.Glob(filepath.Join(a.LogsDir, fmt.Sprintf("default_%s_%s", p.Name, p.UID), "main", "*.log"))
				return n <= 2 && len(logs) <= 2, fmt.Sprintf("%d instances and log files %v kept, want at most 2 each", n, logs)
			})
		})
	}
}

func TestCrashLoopBackOffShowsTheWait(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{ExtraArgs: []string{"--restart-backoff-initial", "30s"}})
	a.WriteManifest("loop.yaml", pod("loop", "Always", "exit 2"))
	p := a.WaitPod("loop", 90*time.Second, "in CrashLoopBackOff", func(p *v1.Pod) bool {
		cs := containerStatus(p, "main")
		return cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
	})
	cs := containerStatus(p, "main")
	if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 2 {
		t.Fatalf("status = %+v", cs)
	}
	t.Logf("waiting: %s", cs.State.Waiting.Message)
	if msg := cs.State.Waiting.Message; !strings.Contains(msg, "back-off 30s restarting failed container=main") || !strings.Contains(msg, "next restart in") {
		t.Fatalf("message %q does not give the wait", msg)
	}
}

func TestRestartPolicies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, policy, command string
		phase                 v1.PodPhase
		restarted             bool
	}{
		{"onfailure-exit0-succeeds", "OnFailure", "exit 0", v1.PodSucceeded, false},
		{"onfailure-exit1-restarts", "OnFailure", "sleep 0.5; exit 1", v1.PodRunning, true},
		{"never-exit1-fails", "Never", "exit 1", v1.PodFailed, false},
		{"never-exit0-succeeds", "Never", "exit 0", v1.PodSucceeded, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, mode := range eventModes {
				t.Run(mode, func(t *testing.T) {
					a := agentWith(t, mode)
					a.WriteManifest("p.yaml", pod("p", tc.policy, tc.command))
					if tc.restarted {
						a.WaitPod("p", 90*time.Second, "restarted", func(p *v1.Pod) bool {
							cs := containerStatus(p, "main")
							return cs != nil && cs.RestartCount >= 1 && p.Status.Phase == tc.phase
						})
						return
					}
					p := a.WaitPod("p", 90*time.Second, string(tc.phase), func(p *v1.Pod) bool { return p.Status.Phase == tc.phase })
					if cs := containerStatus(p, "main"); cs.RestartCount != 0 || cs.State.Terminated == nil {
						t.Fatalf("container status = %+v", cs)
					}
					// A finished pod gives back its sandbox.
					framework.Eventually(t, 30*time.Second, func() (bool, string) {
						for _, sb := range a.Sandboxes(nil) {
							if sb.State.String() == "SANDBOX_READY" {
								return false, "the finished pod's sandbox is still ready"
							}
						}
						return true, ""
					})
				})
			}
		})
	}
}
