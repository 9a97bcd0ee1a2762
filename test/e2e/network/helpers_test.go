package network

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

const startTimeout = 60 * time.Second

// serverPod is a testserver pod (HTTP on 8080 answering its host name on /); extra is
// appended to the container (ports, ...) and annotations go on the pod.
func serverPod(name string, annotations map[string]string, extra string) string {
	var ann string
	if len(annotations) > 0 {
		ann = "\n  annotations:"
		keys := make([]string, 0, len(annotations))
		for k := range annotations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ann += fmt.Sprintf("\n    %s: %q", k, annotations[k])
		}
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s%s
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: %s
    imagePullPolicy: IfNotPresent
%s`, name, ann, framework.TB.TestserverImage, extra)
}

// get fetches url with a short timeout and returns the status code and body.
func get(url string) (int, string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitAnswers waits until url answers 200 with want in the body.
func waitAnswers(t *testing.T, url, want string) {
	t.Helper()
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		code, body, err := get(url)
		return err == nil && code == 200 && strings.Contains(body, want),
			fmt.Sprintf("GET %s: %d %q %v, want 200 with %q", url, code, body, err, want)
	})
}

// leases are host-local's address files in the test bed's IPAM store, one per address held.
func leases(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(framework.TB.Values["CNI_STATE_DIR"], "networks", framework.TB.Values["CNI_NETWORK_NAME"])
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); n != "lock" && !strings.HasPrefix(n, "last_reserved_ip") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// cachedResults are the agent's libcni result cache entries, one per attachment.
func cachedResults(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(framework.TB.Values["CNI_STATE_DIR"], "cache", "results"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// natRules are the iptables NAT rules and chains that belong to the test bed's network (the
// bridge plugin's masquerade, portmap's hostPort DNAT), normalised so two snapshots compare.
func natRules(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	subnet := strings.TrimSuffix(framework.TB.Values["POD_SUBNET"], "0/24")
	name := `"` + framework.TB.Values["CNI_NETWORK_NAME"] + `"`
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if (strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, ":")) && (strings.Contains(l, subnet) || strings.Contains(l, name)) {
			rules = append(rules, l)
		}
	}
	sort.Strings(rules)
	return rules
}

// sandboxIP is the IP CRI's PodSandboxStatus reports for the pod's ready sandbox.
func sandboxIP(t *testing.T, a *framework.Agent, pod *v1.Pod) (string, string) {
	t.Helper()
	sbs := a.Sandboxes(map[string]string{cri.LabelPodUID: string(pod.UID)})
	for _, sb := range sbs {
		if sb.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			continue
		}
		st, err := framework.TB.CRI.PodSandboxStatus(context.Background(), sb.Id, false)
		if err != nil {
			t.Fatal(err)
		}
		return sb.Id, st.GetStatus().GetNetwork().GetIp()
	}
	t.Fatalf("pod %s has no ready sandbox", pod.Name)
	return "", ""
}

// execIn runs cmd in the pod's running container "server" and returns its stdout.
func execIn(t *testing.T, a *framework.Agent, pod *v1.Pod, cmd ...string) string {
	t.Helper()
	return framework.MustExec(t, a.Running(t, map[string]string{cri.LabelPodUID: string(pod.UID)}, "server").Id, cmd...)
}

// hostVeth is the host side of the pod's veth pair, from the agent's cached CNI result.
func hostVeth(t *testing.T, sandboxID string) string {
	t.Helper()
	p := filepath.Join(framework.TB.Values["CNI_STATE_DIR"], "cache", "results",
		framework.TB.Values["CNI_NETWORK_NAME"]+"-"+sandboxID+"-eth0")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("cached CNI result of sandbox %s: %v", sandboxID, err)
	}
	var cached struct {
		Result struct {
			Interfaces []struct {
				Name    string `json:"name"`
				Sandbox string `json:"sandbox"`
			} `json:"interfaces"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &cached); err != nil {
		t.Fatal(err)
	}
	for _, i := range cached.Result.Interfaces {
		if i.Sandbox == "" && strings.HasPrefix(i.Name, "veth") {
			return i.Name
		}
	}
	t.Fatalf("no host veth in the cached result %s", b)
	return ""
}

// run runs a host command and returns its combined output, failing the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
