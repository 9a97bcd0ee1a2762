package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/pkg/podmanager"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// probedPod runs one container with a readiness probe, so every series family has samples.
// timeoutSeconds 5: an exec probe goes through containerd, which is slow on a loaded machine.
func probedPod(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
      timeoutSeconds: 5
`, name, framework.TB.BusyboxImage)
}

func crashingPod(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: crash
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exit 3"]
`, name, framework.TB.BusyboxImage)
}

// cli runs the agent binary's CLI against a's debug server.
func cli(t *testing.T, a *framework.Agent, args ...string) string {
	t.Helper()
	args = append(args, "--debug-address", a.DebugAddr)
	out, err := exec.Command(framework.AgentBinary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nodeagent %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Not parallel: on the shared test bed the CNI delegate hands each ADD to the first agent
// socket in name order, so with other agents running this agent's pods could be networked by
// another agent, whose metrics and timeline would then have the call.
func TestMetricsTimelineAndCLIShowARunningPod(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("obs.yaml", probedPod("obs"))
	a.WriteManifest("crash.yaml", crashingPod("crash"))
	pod := a.WaitRunning("obs", 60*time.Second)
	name := a.PodName("obs")

	// Every named series, with the values this node's one probed pod gives.
	want := []string{
		"kubelet_running_pods ",
		`kubelet_running_containers{container_state="running"} `,
		`kubelet_running_containers{container_state="exited"} `,
		"kubelet_pod_start_duration_seconds_count ",
		`kubelet_pod_worker_duration_seconds_count{operation_type="create"} `,
		`kubelet_pod_worker_duration_seconds_count{operation_type="sync"} `,
		`kubelet_runtime_operations_total{operation_type="run_podsandbox"} `,
		`kubelet_runtime_operations_total{operation_type="create_container"} `,
		`kubelet_runtime_operations_total{operation_type="start_container"} `,
		`kubelet_runtime_operations_total{operation_type="exec_sync"} `,
		`kubelet_runtime_operations_duration_seconds_count{operation_type="list_podsandbox"} `,
		fmt.Sprintf(`prober_probe_total{container="app",namespace="default",pod=%q,probe_type="Readiness",result="successful"} `, name),
		`nodeagent_cni_operations_total{command="ADD",result="success"} `,
		`nodeagent_cni_operation_duration_seconds_count{command="ADD"} `,
		"nodeagent_runtime_event_stream_reconnects_total 0",
		`nodeagent_container_restarts_total{reason="Error"} `,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	}
	var body string
	// The crashing pod's restart comes after its first exit and a back-off: give it time.
	framework.Eventually(t, 90*time.Second, func() (bool, string) {
		code, b, err := a.Get("/metrics")
		if err != nil || code != 200 {
			return false, fmt.Sprintf("/metrics: %d %v", code, err)
		}
		body = b
		for _, w := range want {
			if !strings.Contains(body, "\n"+w) {
				return false, fmt.Sprintf("/metrics lacks %q", w)
			}
		}
		return true, ""
	})
	if !strings.Contains(body, "\nkubelet_running_pods 1\n") && !strings.Contains(body, "\nkubelet_running_pods 2\n") {
		t.Errorf("kubelet_running_pods is not this node's pods:\n%s", grepLines(body, "kubelet_running_pods"))
	}
	if !strings.Contains(body, "\nkubelet_pod_start_duration_seconds_count 1\n") && !strings.Contains(body, "\nkubelet_pod_start_duration_seconds_count 2\n") {
		t.Errorf("pod starts: %s", grepLines(body, "kubelet_pod_start_duration_seconds_count"))
	}

	// The timeline of the pod's start.
	code, raw, err := a.Get("/debug/pods/" + string(pod.UID))
	if err != nil || code != 200 {
		t.Fatalf("/debug/pods/%s: %d %v %s", pod.UID, code, err, raw)
	}
	var d podmanager.PodDebug
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("/debug/pods: %v\n%s", err, raw)
	}
	steps := map[string]podmanager.Step{}
	for _, s := range d.Steps {
		steps[s.Step+"/"+s.Container] = s
	}
	for _, k := range []string{"sandbox/", "network/", "image/app", "create/app", "start/app"} {
		s, ok := steps[k]
		if !ok || s.Start.IsZero() || s.Error != "" {
			t.Errorf("timeline step %s = %+v (ok %v)\n%s", k, s, ok, raw)
		}
	}
	if sb, nw := steps["sandbox/"], steps["network/"]; sb.Duration <= 0 || nw.Duration <= 0 || nw.Duration > sb.Duration ||
		nw.Start.Before(sb.Start) {
		t.Errorf("the network step must lie inside the sandbox step: sandbox %+v network %+v", sb, nw)
	}
	if code, _, _ := a.Get("/debug/pods/no-such-uid"); code != 404 {
		t.Errorf("/debug/pods of an unknown UID: %d, want 404", code)
	}

	// The CLI: the table lists the pod with its IP, describe shows the timeline. The row is
	// read again until it shows the pod ready: one slow probe may make it 0/1 for a moment.
	var out string
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		out = cli(t, a, "pods")
		if !strings.HasPrefix(out, "NAMESPACE ") {
			return false, fmt.Sprintf("nodeagent pods header:\n%s", out)
		}
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 7 && f[1] == name {
				line = l
				if f[0] != "default" || f[2] != "1/1" || f[3] != "Running" || f[6] != pod.Status.PodIP {
					return false, fmt.Sprintf("nodeagent pods row %q, want default %s 1/1 Running ... %s", l, name, pod.Status.PodIP)
				}
			}
		}
		if line == "" {
			return false, fmt.Sprintf("nodeagent pods does not list %s:\n%s", name, out)
		}
		return true, ""
	})
	out = cli(t, a, "describe", name, "-n", "default")
	for _, w := range []string{string(pod.UID), "Timeline", "sandbox", "network", "Started", pod.Status.PodIP} {
		if !strings.Contains(out, w) {
			t.Errorf("nodeagent describe lacks %q:\n%s", w, out)
		}
	}
}

func TestNonLoopbackDebugAddressNeedsATokenFile(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(framework.AgentBinary(t), "--node-name", "n-token-refused", "--root-dir", filepath.Join(dir, "root"),
		"--debug-address", "0.0.0.0:0")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), "--debug-token-file") {
		t.Fatalf("started on a public debug address without a token: %v\n%s", err, out)
	}
}

func TestDebugTokenIsRequiredWhenConfigured(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "debug-token")
	if err := os.WriteFile(tokenFile, []byte("e2e-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// /healthz answers 401 without the token: the framework only waits for an answer.
	a := framework.StartAgent(t, framework.AgentOptions{Unhealthy: true, ExtraArgs: []string{"--debug-token-file", tokenFile}})
	for _, path := range []string{"/healthz", "/metrics", "/pods"} {
		if code, _, err := a.Get(path); err != nil || code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d %v, want 401", path, code, err)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+a.DebugAddr+path, nil)
		req.Header.Set("Authorization", "Bearer e2e-s3cret")
		c := http.Client{Timeout: 5 * time.Second}
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			resp, err := c.Do(req)
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == 200, fmt.Sprintf("%s with the token: %d", path, resp.StatusCode)
		})
	}
	if out := cli(t, a, "pods", "--debug-token-file", tokenFile); !strings.HasPrefix(out, "NAMESPACE") {
		t.Errorf("nodeagent pods with the token:\n%s", out)
	}
	host, _, _ := net.SplitHostPort(a.DebugAddr)
	if host != "127.0.0.1" {
		t.Fatalf("debug address %s", a.DebugAddr)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
