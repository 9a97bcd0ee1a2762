package volumes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// TestSubPathRaceNeverMountsTheHost is the symlink race of CVE-2017-1002101: a sidecar keeps
// swapping the directory d of an emptyDir for a symlink to a host directory (random spells of
// up to 20 ms as a symlink and 400 ms as a directory: a directory deleted between the agent's
// mount and the runtime's fails the container, so legitimate runs need the longer spells),
// while six
// containers that mount the emptyDir with subPath d are restarted over and over (a short
// backoff makes each restart a new mount). Whatever the timing, no container may ever see the
// host directory: each records what /d showed it, and tries to leave a file in it.
func TestSubPathRaceNeverMountsTheHost(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{ExtraArgs: []string{
		"--restart-backoff-initial=100ms", "--restart-backoff-max=200ms",
	}})
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "host-marker"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	var victims strings.Builder
	for i := range 6 {
		fmt.Fprintf(&victims, `  - name: victim%d
    image: %s
    imagePullPolicy: IfNotPresent
    env: [{name: NAME, value: victim%d}]
    command: ["sh", "-c", "if [ -e /d/host-marker ]; then echo escaped > /vol/results/escaped-$NAME-$RANDOM; fi; touch /d/victim-was-here 2>/dev/null; touch /vol/results/ran-$NAME-$RANDOM; sleep 0.2"]
    volumeMounts:
    - {name: vol, mountPath: /vol}
    - {name: vol, mountPath: /d, subPath: d}
`, i, framework.TB.BusyboxImage, i)
	}
	a.WriteManifest("race.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: race}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: flipper
    image: %[1]s
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sh", "-c", "mkdir -p /vol/results; while true; do rm -rf /vol/d; ln -s %[2]s /vol/d; usleep $((RANDOM %% 20000)); rm -f /vol/d; mkdir /vol/d; usleep $((RANDOM * 12)); done"]
    volumeMounts: [{name: vol, mountPath: /vol}]
  containers:
%[3]s  volumes:
  - {name: vol, emptyDir: {}}
`, framework.TB.BusyboxImage, hostDir, victims.String()))

	p := a.WaitPod("race", 60*time.Second, "its sidecar running", func(p *v1.Pod) bool {
		for _, s := range p.Status.InitContainerStatuses {
			if s.State.Running != nil {
				return true
			}
		}
		return false
	})
	results := filepath.Join(a.RootDir, "pods", string(p.UID), "volumes", "kubernetes.io~empty-dir", "vol", "results")
	runs := func() (ran, escaped []string) {
		entries, _ := os.ReadDir(results)
		for _, e := range entries {
			switch {
			case strings.HasPrefix(e.Name(), "ran-"):
				ran = append(ran, e.Name())
			case strings.HasPrefix(e.Name(), "escaped-"):
				escaped = append(escaped, e.Name())
			}
		}
		return ran, escaped
	}

	// The race runs for 35 s; it is checked all along, so an escape fails the test early.
	end := time.Now().Add(35 * time.Second)
	for time.Now().Before(end) {
		if _, escaped := runs(); len(escaped) > 0 {
			t.Fatalf("containers saw the host directory through their subPath: %v", escaped)
		}
		time.Sleep(time.Second)
	}
	ran, escaped := runs()
	if len(escaped) > 0 {
		t.Fatalf("containers saw the host directory through their subPath: %v", escaped)
	}
	// Not a vacuous pass: the containers must really have been mounted and run many times.
	if len(ran) < 20 {
		t.Fatalf("only %d container runs in 35 s; the race was not exercised", len(ran))
	}
	t.Logf("%d container runs with a subPath under attack, none saw the host", len(ran))
	if entries, _ := os.ReadDir(hostDir); len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the host directory was written through a subPath mount: %v", names)
	}

	a.RemoveManifest("race.yaml")
	waitPodDirGone(t, a, p)
}

// TestSubPathMountsStillWork: what subPath is for keeps working with the staged mounts: a
// file, a directory, a read-only directory, a subPathExpr and a hostPath subdirectory.
func TestSubPathMountsStillWork(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	hostDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(hostDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "sub", "h.txt"), []byte("host sub"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.WriteManifest("legit.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: legit}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: prepare
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo a file > /vol/file.txt && mkdir -p /vol/dir && echo inner > /vol/dir/inner"]
    volumeMounts: [{name: vol, mountPath: /vol}]
  containers:
  - name: main
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    volumeMounts:
    - {name: vol, mountPath: /f.txt, subPath: file.txt}
    - {name: vol, mountPath: /dd, subPath: dir}
    - {name: vol, mountPath: /ro, subPath: dir, readOnly: true}
    - {name: vol, mountPath: /expr, subPathExpr: "per-pod/$(POD_NAME)"}
    - {name: host, mountPath: /h, subPath: sub}
  volumes:
  - {name: vol, emptyDir: {}}
  - {name: host, hostPath: {path: %[2]s}}
`, framework.TB.BusyboxImage, hostDir))
	p := a.WaitRunning("legit", 60*time.Second)

	for _, tc := range []struct{ cmd, want string }{
		{"cat /f.txt", "a file"},
		{"cat /dd/inner", "inner"},
		{"cat /ro/inner", "inner"},
		{"touch /ro/x 2>/dev/null; echo $?", "1"},
		{"echo mine > /expr/made && cat /expr/made", "mine"},
		{"cat /h/h.txt", "host sub"},
	} {
		out, _ := execIn(t, p, "sh", "-c", tc.cmd)
		if strings.TrimSpace(out) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, out, tc.want)
		}
	}
	made := filepath.Join(a.RootDir, "pods", string(p.UID), "volumes", "kubernetes.io~empty-dir", "vol", "per-pod", p.Name, "made")
	if b, err := os.ReadFile(made); err != nil || string(b) != "mine\n" {
		t.Errorf("the subPathExpr directory is not %s in the volume: %q %v", made, b, err)
	}

	a.RemoveManifest("legit.yaml")
	waitPodDirGone(t, a, p)
	if b, err := os.ReadFile(filepath.Join(hostDir, "sub", "h.txt")); err != nil || string(b) != "host sub" {
		t.Fatalf("the hostPath content was touched: %q %v", b, err)
	}
}

// waitPodDirGone waits for the pod's directory to go and checks that nothing of it is still
// mounted (its staged subPaths included).
func waitPodDirGone(t *testing.T, a *framework.Agent, p *v1.Pod) {
	t.Helper()
	podDir := filepath.Join(a.RootDir, "pods", string(p.UID))
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		_, err := os.Stat(podDir)
		return os.IsNotExist(err), podDir + " still exists"
	})
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, string(p.UID)) {
			t.Fatalf("a mount of the pod is left: %s", line)
		}
	}
}
