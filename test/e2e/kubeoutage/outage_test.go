package kubeoutage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// outage is how long the API server stays away: longer than the node lease (40 s).
const outage = 60 * time.Second

func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := cluster.KubectlAs(ctx, cluster.AdminKubeconfig, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func apiPod(t *testing.T, ns, name string) *v1.Pod {
	t.Helper()
	var p v1.Pod
	if err := json.Unmarshal([]byte(kubectl(t, "", "get", "pod", "-n", ns, name, "-o", "json")), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func pod(name, ns, node, command string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", %q]
`, name, ns, node, framework.TB.BusyboxImage, command)
}

func TestAPIServerOutageKillsNothingAndStatusesCatchUp(t *testing.T) {
	kc, err := cluster.NodeKubeconfig(framework.NodeName(t))
	if err != nil {
		t.Fatal(err)
	}
	a := framework.StartAgent(t, framework.AgentOptions{ExtraArgs: []string{"--kubeconfig", kc}})
	ns := "outage"
	kubectl(t, "", "create", "namespace", ns)
	if err := cluster.EnsureNamespaceDefaults(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	// steady runs throughout; flaky exits once the file /tmp/exit appears, and is restarted.
	kubectl(t, pod("steady", ns, a.NodeName, "exec sleep 100000"), "apply", "-f", "-")
	kubectl(t, pod("flaky", ns, a.NodeName, "while [ ! -e /tmp/exit ]; do sleep 0.2; done; exit 3"), "apply", "-f", "-")
	for _, name := range []string{"steady", "flaky"} {
		framework.Eventually(t, 90*time.Second, func() (bool, string) {
			p := apiPod(t, ns, name)
			return p.Status.Phase == v1.PodRunning, fmt.Sprintf("%s is %s", name, p.Status.Phase)
		})
	}
	steady := apiPod(t, ns, "steady")
	steadyID := steady.Status.ContainerStatuses[0].ContainerID

	if err := cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	// During the outage, flaky's container exits and the agent restarts it as usual.
	flaky := map[string]string{cri.LabelPodNamespace: ns, cri.LabelPodName: "flaky"}
	framework.MustExec(t, a.Running(t, flaky, "main").Id, "touch", "/tmp/exit")
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		n := len(a.Containers(map[string]string{cri.LabelPodNamespace: ns, cri.LabelPodName: "flaky", cri.LabelContainerName: "main"}))
		return n == 2, fmt.Sprintf("%d instances of flaky's container", n)
	})
	time.Sleep(time.Until(stoppedAt.Add(outage))) // the outage itself is what is tested
	// The status reporter retried every 10 s meanwhile: one warning for the outage (two if
	// the error changed on the way), not one per retry; flaky's restart had a status to
	// write, so there is one. Counted before the API server is back: its warm-up may fail
	// requests differently.
	if n := strings.Count(a.Log(), "cannot write pod status to the API server"); n < 1 || n > 2 {
		t.Errorf("the status outage was logged %d times, want 1 or 2", n)
	}
	if err := cluster.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Soon after the API server's return (the reporter retries every 10 s), statuses show
	// what happened meanwhile.
	framework.Eventually(t, 45*time.Second, func() (bool, string) {
		p := apiPod(t, ns, "flaky")
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount == 1, fmt.Sprintf("flaky's container statuses %+v", cs)
	})
	after := apiPod(t, ns, "steady")
	if id := after.Status.ContainerStatuses[0].ContainerID; id != steadyID || after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("steady was restarted during the outage: %s -> %s", steadyID, id)
	}
	if after.Status.Phase != v1.PodRunning {
		t.Fatalf("steady is %s", after.Status.Phase)
	}
	a.WaitLog(30*time.Second, "pod statuses reach the API server again")
}
