package agent

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func sleeper(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: %[2]s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
  - name: b
    image: %[2]s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
`, name, framework.TB.BusyboxImage)
}

func containerIDs(a *framework.Agent) []string {
	var ids []string
	for _, c := range a.Containers(nil) {
		ids = append(ids, c.Id+"="+c.State.String())
	}
	sort.Strings(ids)
	return ids
}

func TestSIGTERMLeavesPodsRunningAndRestartAdoptsThem(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("keep.yaml", sleeper("keep"))
	before := a.WaitRunning("keep", 60*time.Second)
	ids := containerIDs(a)

	if code := a.Signal(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("nodeagent exited %d on SIGTERM, want 0", code)
	}
	if !strings.Contains(a.Log(), "pods keep running") {
		t.Error("the agent did not say it leaves pods running")
	}
	if got := containerIDs(a); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("containers changed when the agent stopped:\nbefore %v\nafter  %v", ids, got)
	}
	for _, c := range a.Containers(nil) {
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container %s is %s after agent shutdown", c.Metadata.Name, c.State)
		}
	}

	a.Start()
	after := a.WaitRunning("keep", 60*time.Second)
	if after.UID != before.UID {
		t.Fatalf("UID changed across restart: %s -> %s", before.UID, after.UID)
	}
	// Give the restarted agent a few relists to do anything wrong.
	time.Sleep(3 * time.Second)
	if got := containerIDs(a); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("the restarted agent changed containers:\nbefore %v\nafter  %v", ids, got)
	}
	for _, cs := range after.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Errorf("container %s restart count %d after agent restart", cs.Name, cs.RestartCount)
		}
	}
}

func TestPodRemovedWhileAgentDownIsCleanedUpOnStart(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("gone.yaml", sleeper("gone"))
	a.WaitRunning("gone", 60*time.Second)
	a.Signal(syscall.SIGTERM, 30*time.Second)
	a.RemoveManifest("gone.yaml")
	a.Start()
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		n := len(a.Sandboxes(nil))
		return n == 0, fmt.Sprintf("%d sandboxes left of a pod no manifest wants", n)
	})
}

func TestConfigErrorExitsNonZeroNamingTheKey(t *testing.T) {
	bin := framework.AgentBinary(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--log-format", "xml"}, "log-format"},
		{[]string{"--bogus"}, "--bogus"},
	}
	for _, tc := range cases {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() == 0 {
			t.Errorf("%v: exit %v, want non-zero", tc.args, err)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: output %q does not name %q", tc.args, out, tc.want)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "nodeagent ") || !strings.Contains(string(out), "commit") {
		t.Errorf("version: %v %q", err, out)
	}
}

func TestUnreachableRuntimeGivesOneClearErrorAndKeepsTrying(t *testing.T) {
	t.Parallel()
	bin := framework.AgentBinary(t)
	dir := t.TempDir()
	sock := dir + "/no.sock"
	cmd := exec.Command(bin, "--node-name", "n-unreachable", "--root-dir", dir+"/root", "--pod-logs-dir", dir+"/logs",
		"--runtime-endpoint", "unix://"+sock, "--debug-address", "127.0.0.1:0")
	// The process writes while the test reads: a locked buffer.
	out := &framework.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := func() {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("the agent exited instead of retrying: %v\n%s", err, out)
		default:
		}
	}
	// However slow the agent is to get going, it names the missing socket in a warning.
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		exited()
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "level=warning") && strings.Contains(line, sock) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no warning naming %s yet:\n%s", sock, out)
	})
	// Retries come 0.5, 1 and 2 s apart: after 5 s more, several have failed the same way.
	time.Sleep(5 * time.Second)
	exited()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-done
	log := out.String()
	if n := strings.Count(log, "level=warning"); n != 1 {
		t.Errorf("%d warnings, want exactly one clear error:\n%s", n, log)
	}
}
