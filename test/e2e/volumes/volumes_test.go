package volumes

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// execIn runs a command in the pod's first container, as kubectl exec would.
func execIn(t *testing.T, p *v1.Pod, cmd ...string) (string, int32) {
	t.Helper()
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	stdout, stderr, code := framework.Exec(t, id, cmd...)
	return stdout + stderr, code
}

func configMap(name, value string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: %s}
data:
  greeting: %q
`, name, value)
}

func TestEveryVolumeKindIsReadableInsideTheContainer(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "host.txt"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.WriteManifest("config.yaml", configMap("app", "hello")+`---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData:
  password: s3cret
`)
	a.WriteManifest("pod.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: vols, labels: {tier: test}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: mem, mountPath: /mem}
    - {name: host, mountPath: /host, readOnly: true}
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: info, mountPath: /info}
    - {name: all, mountPath: /all}
    - {name: cfg, mountPath: /one/greeting.txt, subPath: greeting}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
  - {name: host, hostPath: {path: %s, type: Directory}}
  - {name: cfg, configMap: {name: app}}
  - {name: sec, secret: {secretName: db, defaultMode: 0400}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
  - name: all
    projected:
      sources:
      - configMap: {name: app, items: [{key: greeting, path: cm/greeting}]}
      - secret: {name: db}
`, framework.TB.BusyboxImage, hostDir))
	p := a.WaitRunning("vols", 60*time.Second)

	for _, tc := range []struct{ cmd, want string }{
		{"echo written > /scratch/f && cat /scratch/f", "written"},
		{"cat /host/host.txt", "from the host"},
		{"cat /cfg/greeting", "hello"},
		{"cat /one/greeting.txt", "hello"},
		{"cat /sec/password", "s3cret"},
		{"stat -L -c %a /sec/password", "400"},
		{"cat /info/labels", `tier="test"`},
		{"cat /info/name", p.Name},
		{"cat /all/cm/greeting /all/password", "hellos3cret"},
		{"grep ' /sec ' /proc/mounts", "tmpfs"},
		{"grep ' /mem ' /proc/mounts", "size=8192k"},
		{"touch /host/x 2>&1; echo $?", "1"},
	} {
		out, _ := execIn(t, p, "sh", "-c", tc.cmd)
		if !strings.Contains(strings.ReplaceAll(out, "\n", ""), tc.want) {
			t.Errorf("%s: got %q, want %q", tc.cmd, out, tc.want)
		}
	}

	// After deletion nothing of the pod is left under the root dir, and nothing mounted.
	a.RemoveManifest("pod.yaml")
	podDir := filepath.Join(a.RootDir, "pods", string(p.UID))
	framework.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(podDir)
		return os.IsNotExist(err), podDir + " still exists"
	})
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), string(p.UID)) {
		t.Fatalf("a mount of the pod is left:\n%s", mounts)
	}
	if b, err := os.ReadFile(filepath.Join(hostDir, "host.txt")); err != nil || string(b) != "from the host" {
		t.Fatalf("the hostPath content was touched: %q %v", b, err)
	}
}

func TestConfigMapEditReachesTheRunningPodAtomically(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	version := func(v int) string { return strings.Repeat(fmt.Sprintf("v%d-", v), 2000) }
	a.WriteManifest("cm.yaml", configMap("live", version(0)))
	a.WriteManifest("pod.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes: [{name: cfg, configMap: {name: live}}]
`, framework.TB.BusyboxImage))
	p := a.WaitRunning("live", 60*time.Second)
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")

	// A reader loop inside the container logs every read's first and last 4 bytes and its
	// length; every read must be one whole version.
	readerDone := make(chan error, 1)
	go func() {
		_, stderr, code, err := framework.TB.CRI.ExecSync(context.Background(), id, []string{"sh", "-c",
			"for i in $(seq 3000); do c=$(cat /cfg/greeting); echo \"${c:0:4} ${c: -4} ${#c}\"; done > /tmp/reads"}, 5*time.Minute)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d: %s", code, stderr)
		}
		readerDone <- err
	}()
	for v := 1; v <= 5; v++ {
		a.WriteManifest("cm.yaml", configMap("live", version(v)))
		want := version(v)[:4]
		framework.Eventually(t, 30*time.Second, func() (bool, string) {
			out, _ := execIn(t, p, "sh", "-c", "head -c 4 /cfg/greeting")
			return out == want, fmt.Sprintf("the pod sees %q, want %q", out, want)
		})
	}
	select {
	case err := <-readerDone:
		if err != nil {
			t.Fatalf("the reader loop: %v", err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatal("the reader loop did not finish in 5 minutes")
	}
	if out, _ := execIn(t, p, "sh", "-c", "wc -l < /tmp/reads"); strings.TrimSpace(out) != "3000" {
		t.Fatalf("the reader made %s reads, want 3000", out)
	}
	out, _ := execIn(t, p, "cat", "/tmp/reads")
	seen := map[byte]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || len(f[0]) != 4 || len(f[1]) != 4 || f[0][1] != f[1][2] || f[2] != fmt.Sprint(len(version(0))) {
			t.Fatalf("a reader saw a partial or mixed file: %q", line)
		}
		seen[f[0][1]] = true
	}
	if len(seen) < 2 {
		t.Fatalf("the reader saw only versions %v: it did not overlap the updates", seen)
	}
	t.Logf("3000 reads across %d versions, each whole", len(seen))
	if p2 := a.FindPod("live"); p2 == nil || p2.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatal("the update restarted the container")
	}
}

func TestHostPathTypeMismatchIsAClearError(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	dir := t.TempDir()
	a.WriteManifest("pod.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hp}
spec:
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    volumeMounts: [{name: h, mountPath: /h}]
  volumes: [{name: h, hostPath: {path: %s, type: File}}]
`, framework.TB.BusyboxImage, dir))
	p := a.WaitPod("hp", 30*time.Second, "waiting with the hostPath error", func(p *v1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Reason == "FailedMount" && strings.Contains(c.Message, `volume "h"`) && strings.Contains(c.Message, dir) {
				return true
			}
		}
		return false
	})
	if p.Status.Phase != v1.PodPending || len(a.Sandboxes(nil)) != 0 {
		t.Fatalf("phase %s with %d sandboxes", p.Status.Phase, len(a.Sandboxes(nil)))
	}
	t.Logf("the pod says: %s", p.Status.ContainerStatuses[0].State.Waiting.Message)
}

func TestImagePullSecretsAuthenticateToTheRegistry(t *testing.T) {
	t.Parallel()
	reg := framework.TB.Values["AUTH_REGISTRY"]
	user, pass := framework.TB.Values["REGISTRY_USER"], framework.TB.Values["REGISTRY_PASSWORD"]
	if reg == "" || user == "" {
		t.Fatal("the test bed has no auth registry")
	}
	a := framework.StartAgent(t, framework.AgentOptions{})
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	cfg := fmt.Sprintf(`{"auths":{"%s":{"auth":"%s"}}}`, reg, auth)
	a.WriteManifest("secret.yaml", fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: regcred}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '%s'
`, cfg))
	pod := func(name, secrets string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  %s
  containers:
  - name: main
    image: %s/busybox:1.36
    imagePullPolicy: Always
    command: ["sleep", "100000"]
`, name, secrets, reg)
	}
	a.WriteManifest("without.yaml", pod("without", ""))
	p := a.WaitPod("without", 60*time.Second, "failing to pull", func(p *v1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff")
	})
	t.Logf("without credentials: %s", p.Status.ContainerStatuses[0].State.Waiting.Message)
	a.WriteManifest("with.yaml", pod("with", "imagePullSecrets: [{name: regcred}]"))
	a.WaitRunning("with", 60*time.Second)
}

func TestMissingConfigMapKeepsThePodPendingUntilItAppears(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("pod.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: waits}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo $GREETING; exec sleep 100000"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: later, key: greeting}}
`, framework.TB.BusyboxImage))
	p := a.WaitPod("waits", 30*time.Second, "waiting for its ConfigMap", func(p *v1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, `configmap "later" not found`)
	})
	if p.Status.Phase != v1.PodPending {
		t.Fatalf("phase = %s", p.Status.Phase)
	}
	a.WriteManifest("later.yaml", configMap("later", "finally"))
	p = a.WaitRunning("waits", 60*time.Second)
	if out, _ := execIn(t, p, "sh", "-c", "echo $GREETING"); strings.TrimSpace(out) != "finally" {
		t.Fatalf("GREETING = %q", out)
	}
}

// TestResourceFieldRefWithoutALimitReadsTheNodesAllocatable: a container that sets no limits
// reads the node's CPUs and memory (less --system-reserved) through resourceFieldRef, in env
// and in a downwardAPI volume, as under the kubelet.
func TestResourceFieldRefWithoutALimitReadsTheNodesAllocatable(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{ExtraArgs: []string{"--system-reserved", "memory=100Mi"}})
	a.WriteManifest("alloc.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: alloc}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    env:
    - name: CPU_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    volumeMounts: [{name: info, mountPath: /info}]
  volumes:
  - name: info
    downwardAPI:
      items:
      - path: mem_mi
        resourceFieldRef: {containerName: main, resource: limits.memory, divisor: 1Mi}
`, framework.TB.BusyboxImage))
	p := a.WaitRunning("alloc", 60*time.Second)

	out, code := execIn(t, p, "sh", "-c", "echo $CPU_LIMIT; cat /info/mem_mi")
	lines := strings.Fields(out)
	if code != 0 || len(lines) != 2 {
		t.Fatalf("exec: %q, exit %d", out, code)
	}
	if want := fmt.Sprint(hostCPUs(t)); lines[0] != want {
		t.Errorf("CPU_LIMIT = %s, want the node's %s CPUs", lines[0], want)
	}
	memKiB := hostMemTotalKiB(t)
	// Capacity is MemTotal, less the 100Mi reserved, divided by 1Mi and rounded up.
	if want := fmt.Sprint((memKiB - 100*1024 + 1023) / 1024); lines[1] != want {
		t.Errorf("mem_mi = %s, want %s (MemTotal %d KiB less 100Mi)", lines[1], want, memKiB)
	}
}

// hostCPUs counts the online CPUs, as the agent does (/sys/devices/system/cpu/online).
func hostCPUs(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(r, "-")
		var l, h int
		fmt.Sscan(lo, &l)
		h = l
		if found {
			fmt.Sscan(hi, &h)
		}
		n += h - l + 1
	}
	return n
}

func hostMemTotalKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kib int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kib); err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}
