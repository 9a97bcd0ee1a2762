package restart

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestInitContainersRunInOrderBeforeTheApp(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("init.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: init}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: first, image: %[1]s, imagePullPolicy: IfNotPresent, command: ["sleep", "0.5"]}
  - {name: second, image: %[1]s, imagePullPolicy: IfNotPresent, command: ["sleep", "0.5"]}
  containers:
  - {name: app, image: %[1]s, imagePullPolicy: IfNotPresent, command: ["sleep", "100000"]}
`, framework.TB.BusyboxImage))
	p := a.WaitRunning("init", 60*time.Second)
	if c := containerStatus(p, "second"); c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
		t.Fatalf("second init container: %+v", c)
	}
	times := map[string][2]time.Time{}
	for _, c := range a.Containers(map[string]string{cri.LabelPodUID: string(p.UID)}) {
		st, err := framework.TB.CRI.ContainerStatus(context.Background(), c.Id, false)
		if err != nil {
			t.Fatal(err)
		}
		times[c.Metadata.Name] = [2]time.Time{time.Unix(0, st.Status.StartedAt), time.Unix(0, st.Status.FinishedAt)}
	}
	if !times["first"][1].After(times["first"][0]) || times["second"][0].Before(times["first"][1]) || times["app"][0].Before(times["second"][1]) {
		t.Fatalf("not in order (start, finish): %v", times)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodInitialized && c.Status != v1.ConditionTrue {
			t.Fatalf("Initialized = %s", c.Status)
		}
	}
}

func TestFailingInitContainer(t *testing.T) {
	t.Parallel()
	manifest := func(policy string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bad-init}
spec:
  restartPolicy: %s
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: setup, image: %[2]s, imagePullPolicy: IfNotPresent, command: ["sh", "-c", "exit 3"]}
  containers:
  - {name: app, image: %[2]s, imagePullPolicy: IfNotPresent, command: ["sleep", "100000"]}
`, policy, framework.TB.BusyboxImage)
	}
	t.Run("Never fails the pod", func(t *testing.T) {
		t.Parallel()
		a := agentWith(t, "auto")
		a.WriteManifest("p.yaml", manifest("Never"))
		p := a.WaitPod("bad-init", 60*time.Second, "Failed", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed })
		if cs := containerStatus(p, "app"); cs == nil || cs.State.Waiting == nil || cs.State.Waiting.Reason != "PodInitializing" {
			t.Fatalf("app status = %+v", cs)
		}
		if n := len(a.Containers(map[string]string{cri.LabelContainerName: "app"})); n != 0 {
			t.Fatalf("the app container was created %d times after its init container failed", n)
		}
	})
	t.Run("Always retries it", func(t *testing.T) {
		t.Parallel()
		a := agentWith(t, "auto")
		a.WriteManifest("p.yaml", manifest("Always"))
		p := a.WaitPod("bad-init", 90*time.Second, "retrying the init container", func(p *v1.Pod) bool {
			cs := containerStatus(p, "setup")
			return cs != nil && cs.RestartCount >= 2
		})
		if p.Status.Phase != v1.PodPending {
			t.Fatalf("phase = %s, want Pending while init fails", p.Status.Phase)
		}
	})
}

func TestSidecarKeepsRunningAndIsRestarted(t *testing.T) {
	t.Parallel()
	a := agentWith(t, "auto")
	a.WriteManifest("side.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: proxy
    image: %[1]s
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sh", "-c", "while [ ! -e /tmp/exit ]; do sleep 0.2; done; exit 1"]
  containers:
  - {name: app, image: %[1]s, imagePullPolicy: IfNotPresent, command: ["sleep", "100000"]}
`, framework.TB.BusyboxImage))
	p := a.WaitRunning("side", 60*time.Second)
	appID := containerStatus(p, "app").ContainerID
	if cs := containerStatus(p, "proxy"); cs.State.Running == nil {
		t.Fatalf("the sidecar does not run beside the app: %+v", cs.State)
	}
	// The sidecar exits when told to (each instance has a fresh /tmp), twice.
	for restarts := int32(1); restarts <= 2; restarts++ {
		id := strings.TrimPrefix(containerStatus(p, "proxy").ContainerID, "containerd://")
		framework.MustExec(t, id, "touch", "/tmp/exit")
		p = a.WaitPod("side", 60*time.Second, fmt.Sprintf("with its sidecar restarted %d times and running", restarts), func(p *v1.Pod) bool {
			cs := containerStatus(p, "proxy")
			return cs.RestartCount == restarts && cs.State.Running != nil
		})
	}
	if cs := containerStatus(p, "app"); cs.ContainerID != appID || cs.State.Running == nil || cs.RestartCount != 0 {
		t.Fatalf("restarting the sidecar disturbed the app: %+v", cs)
	}
	if p.Status.Phase != v1.PodRunning {
		t.Fatalf("phase = %s", p.Status.Phase)
	}
}
