package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// finishingPod is a restartPolicy Never pod that prints two lines and exits with code.
func finishingPod(name, ns, node string, code int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: job
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo first-%s; echo last-%s; exit %d"]
`, name, ns, node, framework.TB.BusyboxImage, name, name, code)
}

func phaseIs(phase v1.PodPhase) func(*v1.Pod) bool {
	return func(p *v1.Pod) bool { return p.Status.Phase == phase }
}

// TestFinishedPodsKeepTheirLogsUntilDeleted is what `kubectl run --restart=Never` and every
// Job user sees: once a pod has Succeeded or Failed, `kubectl logs` still shows its output,
// also after the agent restarts, and its containers stay until the pod is deleted. Its
// sandbox (and IP) is given back at once.
func TestFinishedPodsKeepTheirLogsUntilDeleted(t *testing.T) {
	t.Parallel()
	a, ns, _ := nodeAPINode(t) // kubectl logs reaches the node API
	kubectlApply(t, finishingPod("ok", ns, a.NodeName, 0))
	kubectlApply(t, finishingPod("bad", ns, a.NodeName, 3))
	ok := waitAPIPod(t, ns, "ok", startTimeout, "Succeeded", phaseIs(v1.PodSucceeded))
	bad := waitAPIPod(t, ns, "bad", startTimeout, "Failed", phaseIs(v1.PodFailed))
	if got := bad.Status.ContainerStatuses[0].State.Terminated; got == nil || got.ExitCode != 3 {
		t.Fatalf("bad's container state: %+v", bad.Status.ContainerStatuses[0].State)
	}

	logsShow := func(what string) {
		t.Helper()
		for _, name := range []string{"ok", "bad"} {
			want := fmt.Sprintf("first-%s\nlast-%s\n", name, name)
			framework.Eventually(t, 30*time.Second, func() (bool, string) {
				out, err := cluster.Kubectl(t.Context(), "logs", "-n", ns, name)
				return err == nil && out == want, fmt.Sprintf("%s: kubectl logs %s: %q %v", what, name, out, err)
			})
		}
	}
	logsShow("finished")
	containers := func() []string {
		var ids []string
		for _, p := range []*v1.Pod{ok, bad} {
			for _, c := range a.Containers(map[string]string{cri.LabelPodUID: string(p.UID)}) {
				ids = append(ids, c.Id)
			}
		}
		return ids
	}
	kept := containers()
	if len(kept) != 2 {
		t.Fatalf("%d containers of the finished pods in CRI, want 2 (one each): %v", len(kept), kept)
	}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		var ready int
		for _, sb := range a.Sandboxes(nil) {
			if sb.State.String() == "SANDBOX_READY" {
				ready++
			}
		}
		return ready == 0, fmt.Sprintf("%d sandboxes still ready; finished pods give theirs back", ready)
	})

	// An agent restart changes nothing: no container is started again, the logs stay.
	a.Signal(syscall.SIGKILL, 15*time.Second)
	a.Start()
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		code, body, err := a.Get("/readyz")
		return err == nil && code == 200, fmt.Sprintf("/readyz: %d %q %v", code, body, err)
	})
	logsShow("after an agent restart")
	if got := containers(); strings.Join(got, ",") != strings.Join(kept, ",") {
		t.Fatalf("containers changed across the agent restart: %v -> %v", kept, got)
	}
	if p := getPod(t, ns, "ok"); p == nil || p.Status.Phase != v1.PodSucceeded {
		t.Fatalf("after the restart ok is %+v", p)
	}

	// Deleting the pod removes its containers and its log directory.
	kubectl(t, "delete", "pod", "-n", ns, "ok", "--wait=true", "--timeout=60s")
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		n := len(a.Containers(map[string]string{cri.LabelPodUID: string(ok.UID)}))
		return n == 0, fmt.Sprintf("%d containers of the deleted pod left", n)
	})
	logDir := filepath.Join(a.LogsDir, fmt.Sprintf("%s_%s_%s", ns, "ok", ok.UID))
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(logDir)
		return os.IsNotExist(err), logDir + " is still there"
	})
	if n := len(a.Containers(map[string]string{cri.LabelPodUID: string(bad.UID)})); n != 1 {
		t.Fatalf("deleting ok touched bad's containers: %d left", n)
	}
}
