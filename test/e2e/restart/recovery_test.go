package restart

import (
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// snapshot is what a user compares before and after: each running container with its
// restart count, and each pod's phase.
func snapshot(a *framework.Agent, pods []string) string {
	var lines []string
	for _, name := range pods {
		p := a.FindPod(name)
		if p == nil {
			lines = append(lines, name+": missing")
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			lines = append(lines, fmt.Sprintf("%s %s %s restarts=%d ready=%v %s", name, p.Status.Phase, cs.Name, cs.RestartCount, cs.Ready, cs.ContainerID))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestKill9OfTheAgentChangesNothing(t *testing.T) {
	t.Parallel()
	a := agentWith(t, "auto")
	var steady []string
	for i := range 5 {
		name := fmt.Sprintf("steady%d", i)
		steady = append(steady, name)
		a.WriteManifest(name+".yaml", pod(name, "Always", "exec sleep 100000"))
	}
	a.WriteManifest("loop.yaml", pod("loop", "Always", "sleep 0.3; exit 1"))
	for _, name := range steady {
		a.WaitRunning(name, 60*time.Second)
	}
	loop := a.WaitPod("loop", 90*time.Second, "crash-looping", func(p *v1.Pod) bool {
		return containerStatus(p, "main").RestartCount >= 2
	})
	before := snapshot(a, steady)
	loopRestarts := containerStatus(loop, "main").RestartCount

	if code := a.Signal(syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("kill -9 should not look like a clean exit")
	}
	a.Start()
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		now := snapshot(a, steady)
		return now == before, fmt.Sprintf("after the restart:\n%s\nbefore:\n%s", now, before)
	})
	// Let the restarted agent run a while: it must not touch a running container.
	time.Sleep(3 * time.Second)
	if now := snapshot(a, steady); now != before {
		t.Fatalf("statuses changed after the restart:\n%s\nbefore:\n%s", now, before)
	}
	for _, name := range steady {
		if n := len(a.Containers(map[string]string{cri.LabelPodName: a.PodName(name)})); n != 1 {
			t.Fatalf("pod %s has %d containers after the restart, want 1", name, n)
		}
		if n := len(a.Sandboxes(map[string]string{cri.LabelPodName: a.PodName(name)})); n != 1 {
			t.Fatalf("pod %s has %d sandboxes after the restart, want 1", name, n)
		}
	}
	p := a.WaitPod("loop", 60*time.Second, "still counting restarts", func(p *v1.Pod) bool {
		return containerStatus(p, "main").RestartCount > loopRestarts
	})
	running := 0
	for _, c := range a.Containers(map[string]string{cri.LabelPodName: a.PodName("loop")}) {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running++
		}
	}
	if running > 1 {
		t.Fatalf("the crash-looping pod has %d running instances", running)
	}
	t.Logf("crash-looping pod: %d restarts before kill -9, %d after", loopRestarts, containerStatus(p, "main").RestartCount)
}

func TestContainerdRestartUnderTheAgent(t *testing.T) {
	// Not parallel: it restarts the containerd every test of this package uses.
	for _, mode := range eventModes {
		t.Run(mode, func(t *testing.T) {
			a := agentWith(t, mode)
			a.WriteManifest("before.yaml", pod("before", "Always", "exec sleep 100000"))
			a.WaitRunning("before", 60*time.Second)
			before := snapshot(a, []string{"before"})

			framework.RestartContainerd(t)

			// The agent carries on: a new pod starts, and a crash is seen at once (the event
			// stream is back; the relist period is 5 minutes).
			a.WriteManifest("after.yaml", pod("after", "Always", "sleep 1; exit 1"))
			a.WaitPod("after", 60*time.Second, "restarted after its first crash", func(p *v1.Pod) bool {
				return containerStatus(p, "main").RestartCount >= 1
			})
			if now := snapshot(a, []string{"before"}); now != before {
				t.Fatalf("the running pod changed across the containerd restart:\n%s\nbefore:\n%s", now, before)
			}
			if n := len(a.Containers(map[string]string{cri.LabelPodName: a.PodName("before")})); n != 1 {
				t.Fatalf("%d containers for the running pod, want 1", n)
			}
		})
	}
}
