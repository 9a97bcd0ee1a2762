package pods

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

const startTimeout = 60 * time.Second

func twoContainerPod(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: two
  labels:
    app: two
spec:
  containers:
  - name: web
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-two > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports:
    - containerPort: 80
  - name: sidecar
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo sidecar up; exec sleep 100000"]
`, image)
}

func TestTwoContainerPodRunsAndCRIShowsKubeletLabels(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("two.yaml", twoContainerPod(framework.TB.BusyboxImage))
	pod := a.WaitRunning("two", startTimeout)

	// What crictl pods / crictl ps would show.
	sbs := a.Sandboxes(map[string]string{cri.LabelPodUID: string(pod.UID)})
	if len(sbs) != 1 || sbs[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("sandboxes = %v, want one ready", sbs)
	}
	sb := sbs[0]
	for k, want := range map[string]string{
		cri.LabelPodName: a.PodName("two"), cri.LabelPodNamespace: "default", cri.LabelPodUID: string(pod.UID), "app": "two",
	} {
		if sb.Labels[k] != want {
			t.Errorf("sandbox label %s = %q, want %q", k, sb.Labels[k], want)
		}
	}
	if sb.Metadata.Name != a.PodName("two") || sb.Metadata.Namespace != "default" {
		t.Errorf("sandbox metadata = %v", sb.Metadata)
	}
	names := map[string]bool{}
	for _, c := range a.Containers(map[string]string{cri.LabelPodUID: string(pod.UID)}) {
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container %s is %s", c.Metadata.Name, c.State)
		}
		if c.Labels[cri.LabelContainerName] != c.Metadata.Name || c.Labels[cri.LabelPodName] != a.PodName("two") {
			t.Errorf("container labels = %v", c.Labels)
		}
		names[c.Metadata.Name] = true
	}
	if !names["web"] || !names["sidecar"] || len(names) != 2 {
		t.Fatalf("containers = %v, want web and sidecar", names)
	}

	// The pod IP in status is the sandbox's, and it answers.
	st, err := framework.TB.CRI.PodSandboxStatus(context.Background(), sb.Id, false)
	if err != nil {
		t.Fatal(err)
	}
	if ip := st.Status.GetNetwork().GetIp(); ip == "" || ip != pod.Status.PodIP {
		t.Fatalf("status podIP %q, runtime says %q", pod.Status.PodIP, ip)
	}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := exec.Command("curl", "-sS", "--max-time", "2", "http://"+pod.Status.PodIP+"/").CombinedOutput()
		return err == nil && strings.Contains(string(out), "hello-from-two"), fmt.Sprintf("curl: %v %s", err, out)
	})

	// Conditions and logs as the kubelet lays them out.
	for _, c := range pod.Status.Conditions {
		if c.Status != v1.ConditionTrue {
			t.Errorf("condition %s = %s (%s)", c.Type, c.Status, c.Message)
		}
	}
	logFile := filepath.Join(a.LogsDir, fmt.Sprintf("default_%s_%s", pod.Name, pod.UID), "sidecar", "0.log")
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		b, err := os.ReadFile(logFile)
		return err == nil && strings.Contains(string(b), "sidecar up"), fmt.Sprintf("%s: %v %q", logFile, err, b)
	})
}

func TestEditedManifestReplacesThePod(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	manifest := func(msg string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: edit}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo %s; exec sleep 100000"]
`, framework.TB.BusyboxImage, msg)
	}
	a.WriteManifest("edit.yaml", manifest("first"))
	first := a.WaitRunning("edit", startTimeout)

	a.WriteManifest("edit.yaml", manifest("second"))
	second := a.WaitPod("edit", startTimeout, "replaced and running", func(p *v1.Pod) bool {
		return p.UID != first.UID && p.Status.Phase == v1.PodRunning
	})
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		old := a.Sandboxes(map[string]string{cri.LabelPodUID: string(first.UID)})
		return len(old) == 0, fmt.Sprintf("the old pod's %d sandbox(es) are still there", len(old))
	})
	if got := a.Sandboxes(nil); len(got) != 1 || got[0].Labels[cri.LabelPodUID] != string(second.UID) {
		t.Fatalf("sandboxes after the edit: %v", got)
	}
}

func TestDeletedManifestGivesGraceThenRemovesEverything(t *testing.T) {
	t.Parallel()
	const grace = 4
	a := framework.StartAgent(t, framework.AgentOptions{})
	// The container ignores SIGTERM (it only logs it), so only SIGKILL at the end of the
	// grace period stops it.
	a.WriteManifest("slow.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: %d
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'echo got SIGTERM' TERM; echo ready; while true; do sleep 0.2; done"]
`, grace, framework.TB.BusyboxImage))
	pod := a.WaitRunning("slow", startTimeout)
	logDir := filepath.Join(a.LogsDir, fmt.Sprintf("default_%s_%s", pod.Name, pod.UID))
	logFile := filepath.Join(logDir, "main", "0.log")
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "ready"), "container has not started its trap yet"
	})

	start := time.Now()
	a.RemoveManifest("slow.yaml")
	sawTerm := false
	// The lower bound below is the point; the deadline leaves room for a slow CNI DEL and
	// sandbox removal.
	framework.Eventually(t, (grace+60)*time.Second, func() (bool, string) {
		if b, err := os.ReadFile(logFile); err == nil && strings.Contains(string(b), "got SIGTERM") {
			sawTerm = true
		}
		n := len(a.Sandboxes(map[string]string{cri.LabelPodUID: string(pod.UID)}))
		return n == 0, fmt.Sprintf("%d sandbox(es) left", n)
	})
	took := time.Since(start)
	if took < (grace-1)*time.Second {
		t.Fatalf("pod removed after %s: the container did not get its %ds grace period", took, grace)
	}
	if !sawTerm {
		t.Error("the container never logged SIGTERM before it was killed")
	}
	if n := len(a.Containers(map[string]string{cri.LabelPodUID: string(pod.UID)})); n != 0 {
		t.Fatalf("%d containers left", n)
	}
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		_, err := os.Stat(logDir)
		return os.IsNotExist(err), "pod log directory still exists"
	})
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		return a.FindPod("slow") == nil, "/pods still lists the pod"
	})
}

func TestBrokenManifestDoesNotStopTheGoodOne(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("bad.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  containers:
  - name: main
    imagee: %s
`, framework.TB.BusyboxImage))
	a.WriteManifest("good.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: good}
spec:
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
`, framework.TB.BusyboxImage))
	a.WaitRunning("good", startTimeout)
	line := a.WaitLog(10*time.Second, "bad.yaml", "spec.containers[0].imagee")
	t.Logf("the agent says: %s", line)
	if a.FindPod("bad") != nil {
		t.Fatal("the broken manifest produced a pod")
	}
}
