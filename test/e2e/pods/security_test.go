package pods

import (
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// TestRunAsNonRootRefusesARootImageAndRunsANonRootUser: busybox runs as root, so
// runAsNonRoot alone keeps the container from being created, with the reason and message
// `kubectl describe` users know; with runAsUser 1000 it runs, as uid 1000.
func TestRunAsNonRootRefusesARootImageAndRunsANonRootUser(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	pod := func(name, securityContext string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 0
  securityContext: %s
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
`, name, securityContext, framework.TB.BusyboxImage)
	}
	a.WriteManifest("root.yaml", pod("rootimage", "{runAsNonRoot: true}"))
	a.WriteManifest("user.yaml", pod("asuser", "{runAsNonRoot: true, runAsUser: 1000}"))

	refused := a.WaitPod("rootimage", startTimeout, "waiting with CreateContainerConfigError", func(p *v1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
				return true
			}
		}
		return false
	})
	if msg := refused.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "container has runAsNonRoot and image will run as root") {
		t.Errorf("message %q", msg)
	}
	if cs := a.Containers(map[string]string{cri.LabelPodName: a.PodName("rootimage")}); len(cs) != 0 {
		t.Errorf("%d containers created for rootimage, want none", len(cs))
	}

	p := a.WaitRunning("asuser", startTimeout)
	if cs := a.Containers(map[string]string{cri.LabelPodName: a.PodName("asuser")}); len(cs) != 1 {
		t.Errorf("%d containers found for asuser, want 1 (is the label filter right?)", len(cs))
	}
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	if out := framework.MustExec(t, id, "id", "-u"); strings.TrimSpace(out) != "1000" {
		t.Fatalf("id -u in asuser: %q", out)
	}
}
