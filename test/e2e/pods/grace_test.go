package pods

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// gracePod is a pod whose container marks itself ready in the hostPath dir mounted at /out,
// runs onTerm when it gets SIGTERM, and with preStop (if not "") as an exec preStop hook.
func gracePod(name, grace, dir, onTerm, preStop string) string {
	hook := ""
	if preStop != "" {
		hook = fmt.Sprintf(`
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", %q]}`, preStop)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s}
spec:
  terminationGracePeriodSeconds: %[2]s
  containers:
  - name: main
    image: %[3]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap '%[4]s' TERM; touch /out/%[1]s-ready; while true; do sleep 0.1; done"]
    volumeMounts: [{name: out, mountPath: /out}]%[5]s
  volumes: [{name: out, hostPath: {path: %[6]s, type: Directory}}]
`, name, grace, framework.TB.BusyboxImage, onTerm, hook, dir)
}

// waitGone waits until the pod of manifest name has no sandbox left (what crictl pods
// shows) and /pods no longer lists it.
func waitGone(t *testing.T, a *framework.Agent, name string, pod *v1.Pod, timeout time.Duration) {
	t.Helper()
	framework.Eventually(t, timeout, func() (bool, string) {
		n := len(a.Sandboxes(map[string]string{cri.LabelPodUID: string(pod.UID)}))
		return n == 0, fmt.Sprintf("pod %s: %d sandbox(es) left", name, n)
	})
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		return a.FindPod(name) == nil, "/pods still lists " + name
	})
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(path)
		return err == nil, fmt.Sprintf("%s: %v", path, err)
	})
}

// TestGraceOfOneSecondLetsTheTermHandlerFinish: with terminationGracePeriodSeconds 1 the
// container gets SIGTERM and time to act on it (it used to get SIGKILL only: the second left
// was rounded down to 0).
func TestGraceOfOneSecondLetsTheTermHandlerFinish(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("short.yaml", gracePod("short", "1", dir, "sleep 0.5; echo done > /out/term; exit 0", ""))
	pod := a.WaitRunning("short", startTimeout)
	waitFile(t, filepath.Join(dir, "short-ready"))

	a.RemoveManifest("short.yaml")
	waitGone(t, a, "short", pod, 60*time.Second)
	if b, err := os.ReadFile(filepath.Join(dir, "term")); err != nil || strings.TrimSpace(string(b)) != "done" {
		t.Fatalf("the TERM handler did not finish within the 1 s grace period: %q %v", b, err)
	}
}

// TestHugeGracePeriodsRunPreStopAndEnd: grace periods beyond what a time.Duration holds are
// very long: preStop runs, the stop signal is sent, and a container that exits on it lets
// the pod go (10000000000 used to leave the pod forever, MaxInt64 to kill it at once without
// preStop).
func TestHugeGracePeriodsRunPreStopAndEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := framework.StartAgent(t, framework.AgentOptions{})
	graces := map[string]string{"max": "9223372036854775807", "big": "10000000000"}
	for name, grace := range graces {
		a.WriteManifest(name+".yaml", gracePod(name, grace, dir, "exit 0", "echo prestop > /out/"+name+"-prestop"))
	}
	pods := map[string]*v1.Pod{}
	for name := range graces {
		pods[name] = a.WaitRunning(name, startTimeout)
		waitFile(t, filepath.Join(dir, name+"-ready"))
	}

	for name := range graces {
		a.RemoveManifest(name + ".yaml")
	}
	for name, pod := range pods {
		waitGone(t, a, name, pod, 90*time.Second)
		if b, err := os.ReadFile(filepath.Join(dir, name+"-prestop")); err != nil || strings.TrimSpace(string(b)) != "prestop" {
			t.Errorf("pod %s (grace %s): preStop did not run: %q %v", name, graces[name], b, err)
		}
	}
}
