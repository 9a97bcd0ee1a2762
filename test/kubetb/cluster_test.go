package kubetb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requireBinaries skips the test unless hack/install-kube.sh has built the control plane.
func requireBinaries(t *testing.T) {
	t.Helper()
	if _, err := Binaries(); errors.Is(err, ErrNotBuilt) {
		t.Skipf("skipping the real control plane test: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// logWriter sends Start's and Stop's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

const podN1 = `apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: tb}
spec:
  nodeName: n1
  containers: [{name: c, image: busybox:1.36, command: [sleep, "3600"]}]
`

func node(name string) string {
	return "apiVersion: v1\nkind: Node\nmetadata: {name: " + name + "}\n"
}

func lease(name string) string {
	return `apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: ` + name + `, namespace: kube-node-lease}
spec: {holderIdentity: ` + name + `, leaseDurationSeconds: 40}
`
}

// TestClusterEnforcesNodeIdentity checks what the kube source of the agent relies on: a real
// API server where the admin can bind pods to a node, and where a node's credentials let it
// write its own Node and Lease and read what its pods use, but nothing of another node's.
func TestClusterEnforcesNodeIdentity(t *testing.T) {
	requireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := Start(ctx, dir, logWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	want, err := pinned("KUBE_VERSION")
	if err != nil {
		t.Fatal(err)
	}
	var version struct {
		ServerVersion struct{ GitVersion string }
	}
	if out, err := c.Kubectl(ctx, "version", "-o", "json"); err != nil {
		t.Error(err)
	} else if err := json.Unmarshal([]byte(out), &version); err != nil || version.ServerVersion.GitVersion != want {
		t.Errorf("server version = %q, %v; want %s (hack/install-kube.sh sets it)", version.ServerVersion.GitVersion, err, want)
	}

	// The admin creates a namespace and a pod bound to n1.
	if _, err := c.Kubectl(ctx, "create", "namespace", "tb"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := c.EnsureNamespaceDefaults(ctx, "tb"); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := c.Kubectl(ctx, "-n", "tb", "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}"); err != nil {
		t.Fatal(err)
	} else if ca, _ := os.ReadFile(c.CAFile); out != string(ca) {
		t.Errorf("kube-root-ca.crt holds %q, want the cluster CA", out)
	}
	if _, err := c.KubectlAs(ctx, c.AdminKubeconfig, podN1, "create", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "-n", "tb", "get", "pod", "p1", "-o", "jsonpath={.spec.nodeName}"); err != nil || out != "n1" {
		t.Fatalf("pod p1 nodeName = %q, %v; want n1", out, err)
	}

	// Node n1, with the credentials a real cluster gives it.
	n1, err := c.NodeKubeconfig("n1")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.KubectlAs(ctx, n1, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "system:node:n1" {
		t.Errorf("whoami as n1 = %q, %v; want system:node:n1", out, err)
	}
	for what, manifest := range map[string]string{"its Node": node("n1"), "its Lease": lease("n1")} {
		if _, err := c.KubectlAs(ctx, n1, manifest, "create", "-f", "-"); err != nil {
			t.Errorf("n1 creating %s: %v", what, err)
		}
	}
	for what, manifest := range map[string]string{"Node n2": node("n2"), "Lease n2": lease("n2")} {
		_, err := c.KubectlAs(ctx, n1, manifest, "create", "-f", "-")
		var kerr *KubectlError
		if !errors.As(err, &kerr) || kerr.Reason() != metav1.StatusReasonForbidden {
			t.Errorf("n1 creating %s: got %v, want Forbidden (NodeRestriction)", what, err)
		} else {
			t.Logf("n1 creating %s: %s", what, strings.TrimSpace(kerr.Stderr))
		}
	}
	// The Node authorizer lets n1 read the ConfigMap its pod's kube-api-access volume projects
	// (once its graph has seen the pod), and n2 not.
	n2, err := c.NodeKubeconfig("n2")
	if err != nil {
		t.Fatal(err)
	}
	getCA := []string{"-n", "tb", "get", "configmap", "kube-root-ca.crt", "-o", "name"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.KubectlAs(ctx, n1, "", getCA...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("n1 reading the ConfigMap its pod uses: %v", err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, err = c.KubectlAs(ctx, n2, "", getCA...)
	if kerr := (*KubectlError)(nil); !errors.As(err, &kerr) || kerr.Reason() != metav1.StatusReasonForbidden {
		t.Errorf("n2 reading a ConfigMap of n1's pod: got %v, want Forbidden (Node authorizer)", err)
	}

	// Stop leaves nothing running.
	pids := readPIDs(t, dir, "etcd", "kube-apiserver")
	if err := c.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	for name, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("%s (pid %d) still runs after Stop", name, pid)
		}
	}
	if left := processesUnder(dir); len(left) > 0 {
		t.Errorf("processes naming %s still run after Stop: %v", dir, left)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestFailedStartStopsEtcd: when kube-apiserver does not come up, Start fails with its log
// and leaves no etcd behind.
func TestFailedStartStopsEtcd(t *testing.T) {
	requireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := start(ctx, dir, logWriter{t}, options{extraAPIServerArgs: []string{"--no-such-flag"}})
	if err == nil {
		_ = c.Stop()
		t.Fatal("Start succeeded with a bad kube-apiserver flag")
	}
	if !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("Start error does not quote the kube-apiserver log: %v", err)
	}
	for name, pid := range readPIDs(t, dir, "etcd", "kube-apiserver") {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("%s (pid %d) still runs after a failed Start", name, pid)
		}
	}
	if left := processesUnder(dir); len(left) > 0 {
		t.Errorf("processes naming %s still run after a failed Start: %v", dir, left)
	}
}

func readPIDs(t *testing.T, dir string, names ...string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		pids[name] = pid
	}
	return pids
}

// processesUnder lists the PIDs of processes whose command line names a path under dir.
func processesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
