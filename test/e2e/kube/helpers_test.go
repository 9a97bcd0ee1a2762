package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
	"github.com/nodeagent/nodeagent/test/kubetb"
)

// httpClient is for requests to pods; a hung connection fails the test, not the package.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// kubectl runs kubectl as the cluster admin and fails the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := cluster.Kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// kubectlApply applies a manifest given as text.
func kubectlApply(t *testing.T, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cluster.KubectlAs(ctx, cluster.AdminKubeconfig, manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, manifest)
	}
}

// node starts an agent that joins the cluster as its own node, with a namespace of the same
// name for the test's API objects (with what kube-controller-manager would put there).
func node(t *testing.T, extra ...string) (*framework.Agent, string) {
	t.Helper()
	a := framework.StartAgent(t, framework.AgentOptions{ExtraArgs: append([]string{"--kubeconfig", nodeKubeconfig(t)}, extra...)})
	ns := a.NodeName
	kubectl(t, "create", "namespace", ns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.EnsureNamespaceDefaults(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = cluster.Kubectl(ctx, "delete", "namespace", ns, "--wait=false")
		_, _ = cluster.Kubectl(ctx, "delete", "node", a.NodeName, "--wait=false")
	})
	return a, ns
}

// nodeKubeconfig issues the node credentials for the agent about to start.
func nodeKubeconfig(t *testing.T) string {
	t.Helper()
	path, err := cluster.NodeKubeconfig(framework.NodeName(t))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// getPod reads a pod from the API as the admin; nil when it does not exist.
func getPod(t *testing.T, ns, name string) *v1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := cluster.Kubectl(ctx, "get", "pod", "-n", ns, name, "-o", "json")
	if err != nil {
		if kerr := (*kubetb.KubectlError)(nil); errors.As(err, &kerr) && kerr.Reason() == metav1.StatusReasonNotFound {
			return nil
		}
		t.Fatalf("kubectl get pod %s/%s: %v", ns, name, err)
	}
	var p v1.Pod
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// waitAPIPod waits until the API's copy of the pod satisfies cond.
func waitAPIPod(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	var p *v1.Pod
	framework.Eventually(t, timeout, func() (bool, string) {
		p = getPod(t, ns, name)
		if p != nil && cond(p) {
			return true, ""
		}
		b, _ := json.Marshal(p)
		return false, fmt.Sprintf("pod %s/%s is not %s; API has: %s", ns, name, what, b)
	})
	return p
}

func runningReady(p *v1.Pod) bool {
	if p.Status.Phase != v1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// serverPod is a testserver pod bound to node in ns.
func serverPod(name, ns, node, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: %s
    imagePullPolicy: IfNotPresent
%s`, name, ns, node, framework.TB.TestserverImage, extra)
}
