package kube

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// nodeAPINode starts an agent whose node API accepts the API server's kubelet client
// certificate (signed by the cluster CA). It returns the agent, its namespace and the node
// API's base URL on loopback.
func nodeAPINode(t *testing.T) (*framework.Agent, string, string) {
	t.Helper()
	a, ns := node(t, "--client-ca-file", cluster.CAFile)
	return a, ns, fmt.Sprintf("https://127.0.0.1:%d", a.NodeAPIPort)
}

// nodeAPIClient trusts the agent's self-signed serving certificate (which must name
// 127.0.0.1) and nothing else.
func nodeAPIClient(t *testing.T, a *framework.Agent) *http.Client {
	t.Helper()
	var pem []byte
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		var err error
		pem, err = os.ReadFile(filepath.Join(a.RootDir, "pki", "nodeagent.crt"))
		return err == nil, fmt.Sprintf("no self-signed certificate: %v", err)
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("the serving certificate is not PEM")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// nodeAPIGet sends GET base+path with the bearer token (none if empty).
func nodeAPIGet(t *testing.T, c *http.Client, base, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Sent byte for byte as written, ".." and escapes included.
	req.URL.Opaque, req.URL.RawQuery = path, ""
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// saToken is a token of service account sa in ns, created if missing.
func saToken(t *testing.T, ns, sa string) string {
	t.Helper()
	if sa != "default" {
		kubectlApply(t, fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n", sa, ns))
	}
	return strings.TrimSpace(kubectl(t, "create", "token", "-n", ns, sa))
}

// chattyPod runs busybox printing "started", then whatever is written to /tmp/say, and
// exiting 1 with "stopping" once /tmp/stop exists.
func chattyPod(name, ns, node string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: talk
    image: %s
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo started; while true; do if [ -f /tmp/stop ]; then echo stopping >&2; exit 1; fi; if [ -f /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 0.1; done']
`, name, ns, node, framework.TB.BusyboxImage)
}

func TestNodeAPIAuthenticatesAuthorizesAndRejectsBadPaths(t *testing.T) {
	t.Parallel()
	a, ns, base := nodeAPINode(t)
	kubectlApply(t, chattyPod("talk", ns, a.NodeName))
	waitAPIPod(t, ns, "talk", startTimeout, "Running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	c := nodeAPIClient(t, a)
	logs := "/containerLogs/" + ns + "/talk/talk"

	if code, body := nodeAPIGet(t, c, base, logs, ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d %q, want 401", code, body)
	}
	if code, body := nodeAPIGet(t, c, base, logs, "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("a made-up token: %d %q, want 401", code, body)
	}
	nobody := saToken(t, ns, "default")
	code, body := nodeAPIGet(t, c, base, logs, nobody)
	if want := fmt.Sprintf("Forbidden (user=system:serviceaccount:%s:default, verb=get, resource=nodes, subresource(s)=[proxy])", ns); code != http.StatusForbidden || !strings.Contains(body, want) {
		t.Errorf("a token without rights: %d %q, want 403 with %q", code, body, want)
	}

	// nodes/proxy on this node is what the kubelet's API wants for logs.
	kubectlApply(t, fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: %[1]s-node-proxy}
rules:
- apiGroups: [""]
  resources: [nodes/proxy]
  resourceNames: [%[2]s]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: %[1]s-node-proxy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %[1]s-node-proxy}
subjects:
- {kind: ServiceAccount, name: reader, namespace: %[1]s}
`, ns, a.NodeName))
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "delete", "clusterrole,clusterrolebinding", ns+"-node-proxy")
	})
	reader := saToken(t, ns, "reader")
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		code, body := nodeAPIGet(t, c, base, logs, reader)
		return code == 200 && strings.Contains(body, "started"), fmt.Sprintf("authorized token: %d %q", code, body)
	})
	if code, body := nodeAPIGet(t, c, base, "/pods", reader); code != 200 || !strings.Contains(body, `"name":"talk"`) {
		t.Errorf("/pods: %d %q", code, body)
	}

	for _, p := range []string{
		"/containerLogs/" + ns + "/../../etc/passwd",
		"/containerLogs/" + ns + "/talk/..%2F..%2F..%2Fetc%2Fpasswd",
		"/containerLogs/" + ns + "/talk/%2e%2e",
		"/containerLogs/" + ns + "/talk/talk/../../../../etc/passwd",
		"/exec/" + ns + "/talk/..%2Ftalk?command=id&output=1",
		"/exec/" + ns + "/../kube-system/x/y?command=id&output=1",
	} {
		if code, body := nodeAPIGet(t, c, base, p, reader); code != http.StatusBadRequest || strings.Contains(body, "root:") {
			t.Errorf("%s: %d %q, want 400", p, code, body)
		}
	}
	for p, want := range map[string]int{
		logs + "?tailLines=-1":                 http.StatusBadRequest,
		logs + "?limitBytes=-1":                http.StatusBadRequest,
		logs + "?sinceSeconds=abc":             http.StatusBadRequest,
		"/containerLogs/" + ns + "/talk/other": http.StatusNotFound,
		"/containerLogs/" + ns + "/absent/x":   http.StatusNotFound,
	} {
		if code, body := nodeAPIGetQuery(t, c, base, p, reader); code != want {
			t.Errorf("%s: %d %q, want %d", p, code, body, want)
		}
	}
}

// nodeAPIGetQuery is nodeAPIGet for a path with a query string.
func nodeAPIGetQuery(t *testing.T, c *http.Client, base, pathQuery, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+pathQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", pathQuery, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestKubectlLogsFollowPreviousAndExecThroughTheAPIServer(t *testing.T) {
	t.Parallel()
	a, ns, _ := nodeAPINode(t)
	kubectlApply(t, chattyPod("talk", ns, a.NodeName))
	waitAPIPod(t, ns, "talk", startTimeout, "Running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })

	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := cluster.Kubectl(t.Context(), "logs", "-n", ns, "talk")
		return err == nil && out == "started\n", fmt.Sprintf("kubectl logs: %q %v", out, err)
	})
	if out := kubectl(t, "exec", "-n", ns, "talk", "--", "sh", "-c", "echo out; echo err >&2; id -u"); out != "out\n0\n" {
		t.Errorf("kubectl exec stdout %q", out)
	}
	// -i: stdin travels through the API server and the node API to the process.
	if out, err := cluster.KubectlAs(t.Context(), cluster.AdminKubeconfig, "piped in\n", "exec", "-i", "-n", ns, "talk", "--", "cat"); err != nil || out != "piped in\n" {
		t.Errorf("kubectl exec -i: %q %v", out, err)
	}
	if out := kubectl(t, "logs", "-n", ns, "talk", "--timestamps"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z started\n$`).MatchString(out) {
		t.Errorf("kubectl logs --timestamps: %q", out)
	}

	// kubectl logs -f: a line written after it started arrives while it runs.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	follow := exec.CommandContext(ctx, filepath.Join(cluster.BinDir, "kubectl"), "--kubeconfig="+cluster.AdminKubeconfig,
		"logs", "-f", "-n", ns, "talk")
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	follow.Stderr = os.Stderr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("kubectl logs -f ended before %q", want)
				}
				if l == want {
					return
				}
			case <-deadline:
				t.Fatalf("kubectl logs -f: no %q within %s", want, within)
			}
		}
	}
	expect("started", 30*time.Second)
	kubectl(t, "exec", "-n", ns, "talk", "--", "sh", "-c", "echo said-after-follow > /tmp/say")
	expect("said-after-follow", 60*time.Second)

	// The container exits 1 and is restarted; the follow ends with the instance, and
	// --previous reads the instance that ended.
	kubectl(t, "exec", "-n", ns, "talk", "--", "touch", "/tmp/stop")
	expect("stopping", 60*time.Second)
	select {
	case _, ok := <-lines:
		for ok {
			_, ok = <-lines
		}
	case <-time.After(30 * time.Second):
		t.Error("kubectl logs -f did not end when the container exited")
	}
	_ = follow.Wait()
	waitAPIPod(t, ns, "talk", 60*time.Second, "restarted and running", func(p *v1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	if out := kubectl(t, "logs", "-n", ns, "talk", "--previous"); out != "started\nsaid-after-follow\nstopping\n" {
		t.Errorf("kubectl logs --previous: %q", out)
	}
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		out := kubectl(t, "logs", "-n", ns, "talk")
		return out == "started\n", fmt.Sprintf("kubectl logs of the new instance: %q", out)
	})
	if out := kubectl(t, "logs", "-n", ns, "talk", "--previous", "--tail=1"); out != "stopping\n" {
		t.Errorf("kubectl logs --previous --tail=1: %q", out)
	}
}

func TestKubectlPortForwardThroughTheAPIServer(t *testing.T) {
	t.Parallel()
	a, ns, _ := nodeAPINode(t)
	kubectlApply(t, serverPod("web", ns, a.NodeName, ""))
	waitAPIPod(t, ns, "web", startTimeout, "Running and Ready", runningReady)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pf := exec.CommandContext(ctx, filepath.Join(cluster.BinDir, "kubectl"), "--kubeconfig="+cluster.AdminKubeconfig,
		"port-forward", "-n", ns, "pod/web", "--address=127.0.0.1", ":8080")
	stdout, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	pf.Stderr = &stderr
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = pf.Wait() }()
	// "Forwarding from 127.0.0.1:<port> -> 8080"
	re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
	sc := bufio.NewScanner(stdout)
	var port string
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			port = m[1]
			break
		}
	}
	if port == "" {
		t.Fatalf("kubectl port-forward printed no local port; stderr: %s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		resp, err := httpClient.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return false, fmt.Sprintf("GET through the forward: %v; kubectl: %s", err, stderr.String())
		}
		resp.Body.Close()
		return resp.StatusCode == 200, "GET through the forward: " + resp.Status
	})
}
