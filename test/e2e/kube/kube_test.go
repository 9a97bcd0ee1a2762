package kube

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

const startTimeout = 90 * time.Second

func TestNodeJoinsReadyAndRenewsItsLease(t *testing.T) {
	t.Parallel()
	a, _ := node(t, "--node-labels", "nodeagent.io/zone=test")
	var n v1.Node
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := cluster.Kubectl(t.Context(), "get", "node", a.NodeName, "-o", "json")
		if err != nil {
			return false, err.Error()
		}
		if err := json.Unmarshal([]byte(out), &n); err != nil {
			return false, err.Error()
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady {
				return c.Status == v1.ConditionTrue && c.Reason == "KubeletReady", fmt.Sprintf("Ready %s %s %q", c.Status, c.Reason, c.Message)
			}
		}
		return false, "no Ready condition yet"
	})
	for k, want := range map[string]string{"kubernetes.io/hostname": "", "kubernetes.io/os": "linux", "nodeagent.io/zone": "test"} {
		if got, ok := n.Labels[k]; !ok || (want != "" && got != want) {
			t.Errorf("node label %s = %q, want %q", k, got, want)
		}
	}
	if n.Status.Capacity.Cpu().IsZero() || n.Status.Capacity.Memory().IsZero() || n.Status.Capacity.Pods().Value() != 110 {
		t.Errorf("capacity %v", n.Status.Capacity)
	}
	if !strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "containerd://") || n.Status.NodeInfo.BootID == "" {
		t.Errorf("nodeInfo %+v", n.Status.NodeInfo)
	}

	lease := func() time.Time {
		out := kubectl(t, "get", "lease", "-n", "kube-node-lease", a.NodeName, "-o", "json")
		var l coordinationv1.Lease
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != a.NodeName || l.Spec.RenewTime == nil {
			t.Fatalf("lease %+v", l.Spec)
		}
		return l.Spec.RenewTime.Time
	}
	first := lease()
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		return lease().After(first), "lease not renewed"
	})
}

func TestKubectlPodRunsShowsItsIPAndEventsAndIsDeleted(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, serverPod("web", ns, a.NodeName, ""))
	p := waitAPIPod(t, ns, "web", startTimeout, "Running and Ready", runningReady)

	wide := kubectl(t, "get", "pod", "-n", ns, "web", "-o", "wide")
	if !strings.Contains(wide, p.Status.PodIP) || !strings.Contains(wide, a.NodeName) || !strings.Contains(wide, "Running") {
		t.Errorf("kubectl get -o wide:\n%s", wide)
	}
	// Ready says the container runs, not that its server listens yet (no readiness probe).
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		resp, err := httpClient.Get("http://" + p.Status.PodIP + ":8080/")
		if err != nil {
			return false, fmt.Sprintf("the pod's IP does not answer: %v", err)
		}
		resp.Body.Close()
		return true, ""
	})

	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		d := kubectl(t, "describe", "pod", "-n", ns, "web")
		for _, ev := range []string{"Pulled", "Created", "Started"} {
			if !strings.Contains(d, ev) {
				return false, "kubectl describe has no " + ev + " event:\n" + d
			}
		}
		return true, ""
	})

	// kubectl delete waits until the agent has stopped the pod and removed the object.
	kubectl(t, "delete", "pod", "-n", ns, "web", "--timeout=60s")
	if n := len(a.Sandboxes(nil)); n != 0 {
		t.Errorf("%d sandboxes left after kubectl delete", n)
	}
	if getPod(t, ns, "web") != nil {
		t.Error("the pod object is still in the API")
	}
}

// TestFailingReadinessProbeShowsAsAnUnhealthyEvent: what `kubectl describe pod` shows a user
// whose readiness probe fails: the pod Running but not Ready, and the kubelet's Warning
// Unhealthy event with the probe's output, its count growing with each failed run.
func TestFailingReadinessProbeShowsAsAnUnhealthyEvent(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, serverPod("notready", ns, a.NodeName, `    readinessProbe:
      httpGet: {path: /missing, port: 8080}
      periodSeconds: 1
`))
	const want = "Readiness probe failed: HTTP probe failed with statuscode: 404"
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		out := kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=notready,reason=Unhealthy",
			"-o", "jsonpath={range .items[*]}{.type}|{.count}|{.source.component}|{.message}{\"\\n\"}{end}")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.SplitN(line, "|", 4)
			if len(f) == 4 && f[0] == "Warning" && f[1] != "1" && f[2] == "nodeagent" && f[3] == want {
				return true, ""
			}
		}
		return false, "no repeated Warning Unhealthy event from nodeagent with " + want + ":\n" + out
	})
	p := getPod(t, ns, "notready")
	if p == nil || p.Status.Phase != v1.PodRunning || runningReady(p) {
		t.Fatalf("pod should be Running and not Ready: %+v", p)
	}
}

func TestConfigMapEditAndServiceAccountTokenReachThePod(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: %s}\ndata: {greeting: hello}\n", ns))
	kubectlApply(t, serverPod("cfg", ns, a.NodeName, `    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
  volumes:
  - name: cfg
    configMap: {name: cfg}
`))
	p := waitAPIPod(t, ns, "cfg", startTimeout, "Running and Ready", runningReady)
	// The ServiceAccount admission plugin gave it the kube-api-access volume.
	if !strings.Contains(fmt.Sprint(p.Spec.Volumes), "kube-api-access") {
		t.Fatalf("no kube-api-access volume: %v", p.Spec.Volumes)
	}

	if out := execIn(t, a, p, "cat", "/etc/cfg/greeting"); out != "hello" {
		t.Fatalf("greeting %q", out)
	}
	token := execIn(t, a, p, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
	if len(strings.Split(token, ".")) != 3 {
		t.Fatalf("service account token %q is not a JWT", token)
	}
	if ca := execIn(t, a, p, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"); !strings.Contains(ca, "BEGIN CERTIFICATE") {
		t.Fatalf("ca.crt %q", ca)
	}
	if got := execIn(t, a, p, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"); got != ns {
		t.Fatalf("namespace file %q, want %q", got, ns)
	}

	kubectlApply(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: %s}\ndata: {greeting: bonjour}\n", ns))
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		out := execIn(t, a, p, "cat", "/etc/cfg/greeting")
		return out == "bonjour", fmt.Sprintf("greeting %q", out)
	})
}

func TestStaticPodAppearsAsAMirrorPod(t *testing.T) {
	t.Parallel()
	a, _ := node(t)
	a.WriteManifest("static.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: static}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: %s
    imagePullPolicy: IfNotPresent
`, framework.TB.TestserverImage))
	name := a.PodName("static")
	p := waitAPIPod(t, "default", name, startTimeout, "a Running mirror pod", func(p *v1.Pod) bool {
		return p.Annotations["kubernetes.io/config.mirror"] != "" && runningReady(p)
	})
	if p.Spec.NodeName != a.NodeName {
		t.Errorf("mirror pod on node %q", p.Spec.NodeName)
	}

	a.RemoveManifest("static.yaml")
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		return getPod(t, "default", name) == nil, "mirror pod still in the API"
	})
}

func TestAgentRestartRecreatesNothing(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, serverPod("keep", ns, a.NodeName, ""))
	before := waitAPIPod(t, ns, "keep", startTimeout, "Running and Ready", runningReady)
	ids := containerIDs(a)

	if code := a.Signal(syscall.SIGKILL, 15*time.Second); code == 0 {
		t.Log("agent exited 0 on SIGKILL")
	}
	a.Start()
	// Ready: every source read and each pod synced once, so any recreation would have begun.
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		code, body, err := a.Get("/readyz")
		return err == nil && code == 200, fmt.Sprintf("/readyz: %d %q %v", code, body, err)
	})
	after := waitAPIPod(t, ns, "keep", 30*time.Second, "Running and Ready", runningReady)
	if got := containerIDs(a); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("containers changed across the agent restart:\nbefore %v\nafter  %v", ids, got)
	}
	if after.Status.ContainerStatuses[0].RestartCount != before.Status.ContainerStatuses[0].RestartCount ||
		after.Status.PodIP != before.Status.PodIP {
		t.Fatalf("status changed across the restart: %+v -> %+v", before.Status.ContainerStatuses, after.Status.ContainerStatuses)
	}
}

func containerIDs(a *framework.Agent) []string {
	var ids []string
	for _, c := range a.Containers(nil) {
		ids = append(ids, c.Id+"="+c.State.String())
	}
	return ids
}

// execIn runs cmd in the pod's running container "server" and returns its stdout, trimmed.
func execIn(t *testing.T, a *framework.Agent, p *v1.Pod, cmd ...string) string {
	t.Helper()
	return strings.TrimSpace(framework.MustExec(t, a.Running(t, map[string]string{cri.LabelPodUID: string(p.UID)}, "server").Id, cmd...))
}

func TestPodDeletedWhileTheAgentWasDownIsCleanedUpOnStart(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, serverPod("gone", ns, a.NodeName, ""))
	waitAPIPod(t, ns, "gone", startTimeout, "Running and Ready", runningReady)
	a.Signal(syscall.SIGTERM, 15*time.Second)

	// With the node away, only a forced delete removes the object at once.
	kubectl(t, "delete", "pod", "-n", ns, "gone", "--grace-period=0", "--force")
	if n := len(a.Sandboxes(nil)); n != 1 {
		t.Fatalf("%d sandboxes before the restart, want the pod's one", n)
	}
	a.Start()
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		n := len(a.Sandboxes(nil))
		return n == 0, fmt.Sprintf("%d sandboxes left of a pod the API server no longer has", n)
	})
}
