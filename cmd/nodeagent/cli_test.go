package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodeagent/nodeagent/pkg/podmanager"
)

var cliNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(cliNow.Add(-d)) }

func running(name string, ready bool, restarts int32) v1.ContainerStatus {
	return v1.ContainerStatus{Name: name, Ready: ready, RestartCount: restarts,
		State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: ago(time.Minute)}}}
}

func waiting(name, reason string, restarts int32) v1.ContainerStatus {
	return v1.ContainerStatus{Name: name, RestartCount: restarts,
		State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason}}}
}

func terminated(name, reason string, code int32) v1.ContainerStatus {
	return v1.ContainerStatus{Name: name,
		State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{Reason: reason, ExitCode: code}}}
}

func podWith(name string, phase v1.PodPhase, containers []string, statuses ...v1.ContainerStatus) v1.Pod {
	p := v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), CreationTimestamp: ago(5 * time.Minute)},
		Status:     v1.PodStatus{Phase: phase, ContainerStatuses: statuses},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: c, Image: "busybox:1.36"})
	}
	return p
}

func TestPodStatusColumnIsComputedAsKubectlDoes(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	crashed := waiting("a", "CrashLoopBackOff", 4)
	crashed.LastTerminationState.Terminated = &v1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(45 * time.Second)}
	deleting := podWith("bye", v1.PodRunning, []string{"a"}, running("a", true, 0))
	deleting.DeletionTimestamp = &metav1.Time{Time: cliNow}
	initWaiting := podWith("init", v1.PodPending, []string{"a"}, waiting("a", "PodInitializing", 0))
	initWaiting.Spec.InitContainers = []v1.Container{{Name: "i1"}, {Name: "i2"}}
	initWaiting.Status.InitContainerStatuses = []v1.ContainerStatus{terminated("i1", "Completed", 0), running("i2", false, 0)}
	initFailed := podWith("initfail", v1.PodPending, []string{"a"}, waiting("a", "PodInitializing", 0))
	initFailed.Spec.InitContainers = []v1.Container{{Name: "i1"}}
	initFailed.Status.InitContainerStatuses = []v1.ContainerStatus{waiting("i1", "CrashLoopBackOff", 2)}
	sidecar := podWith("side", v1.PodRunning, []string{"a"}, running("a", true, 0))
	sidecar.Spec.InitContainers = []v1.Container{{Name: "proxy", RestartPolicy: &always}}
	started := true
	proxy := running("proxy", true, 1)
	proxy.Started = &started
	sidecar.Status.InitContainerStatuses = []v1.ContainerStatus{proxy}
	sidecar.Status.Conditions = []v1.PodCondition{{Type: v1.PodInitialized, Status: v1.ConditionTrue}}
	oneDone := podWith("half", v1.PodRunning, []string{"a", "b"}, running("a", true, 0), terminated("b", "Completed", 0))
	oneDone.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionFalse}}

	cases := []struct {
		pod                     v1.Pod
		ready, status, restarts string
	}{
		{podWith("web", v1.PodRunning, []string{"a", "b"}, running("a", true, 0), running("b", true, 0)), "2/2", "Running", "0"},
		{podWith("unready", v1.PodRunning, []string{"a"}, running("a", false, 0)), "0/1", "Running", "0"},
		{podWith("new", v1.PodPending, []string{"a"}, waiting("a", "ContainerCreating", 0)), "0/1", "ContainerCreating", "0"},
		{podWith("crash", v1.PodRunning, []string{"a"}, crashed), "0/1", "CrashLoopBackOff", "4 (45s ago)"},
		{podWith("pull", v1.PodPending, []string{"a"}, waiting("a", "ImagePullBackOff", 0)), "0/1", "ImagePullBackOff", "0"},
		{podWith("job", v1.PodSucceeded, []string{"a"}, terminated("a", "Completed", 0)), "0/1", "Completed", "0"},
		{podWith("failed", v1.PodFailed, []string{"a"}, terminated("a", "Error", 2)), "0/1", "Error", "0"},
		{podWith("noreason", v1.PodFailed, []string{"a"}, terminated("a", "", 3)), "0/1", "ExitCode:3", "0"},
		{podWith("nostatus", v1.PodPending, []string{"a"}), "0/1", "Pending", "0"},
		{deleting, "1/1", "Terminating", "0"},
		{initWaiting, "0/1", "Init:1/2", "0"},
		{initFailed, "0/1", "Init:CrashLoopBackOff", "2"},
		{sidecar, "2/2", "Running", "1"},
		{oneDone, "1/2", "NotReady", "0"},
	}
	for _, tc := range cases {
		t.Run(tc.pod.Name, func(t *testing.T) {
			r := podRow(&tc.pod, cliNow)
			if s := fmt.Sprintf("%d/%d", r.ready, r.total); s != tc.ready {
				t.Errorf("READY = %s, want %s", s, tc.ready)
			}
			if r.status != tc.status {
				t.Errorf("STATUS = %s, want %s", r.status, tc.status)
			}
			if r.restarts != tc.restarts {
				t.Errorf("RESTARTS = %s, want %s", r.restarts, tc.restarts)
			}
		})
	}
}

func TestPodsTableLooksLikeKubectlWide(t *testing.T) {
	web := podWith("web", v1.PodRunning, []string{"a", "b"}, running("a", true, 0), running("b", true, 0))
	web.Status.PodIP = "10.88.0.5"
	crash := podWith("crash", v1.PodRunning, []string{"a"}, waiting("a", "CrashLoopBackOff", 3))
	crash.Namespace = "apps"
	crash.CreationTimestamp = ago(3 * time.Hour)
	crash.Status.PodIP = "10.88.0.7"
	static := podWith("static", v1.PodPending, []string{"a"}, waiting("a", "ContainerCreating", 0))
	static.CreationTimestamp = metav1.Time{} // manifest pods: the age is the start time
	start := ago(90 * time.Second)
	static.Status.StartTime = &start

	var out bytes.Buffer
	if err := printPods(&out, []v1.Pod{web, static, crash}, cliNow); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAMESPACE   NAME     READY   STATUS              RESTARTS   AGE   IP\n" +
		"apps        crash    0/1     CrashLoopBackOff    3          3h    10.88.0.7\n" +
		"default     static   0/1     ContainerCreating   0          90s   <none>\n" +
		"default     web      2/2     Running             0          5m    10.88.0.5\n"
	if out.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out.String(), want)
	}
}

func testDebug() *podmanager.PodDebug {
	t0 := cliNow.Add(-2 * time.Minute)
	return &podmanager.PodDebug{
		UID: "uid-web", Namespace: "default", Name: "web",
		LastSync: podmanager.SyncInfo{Start: cliNow.Add(-5 * time.Second), Duration: podmanager.Duration(3 * time.Millisecond), Operation: "sync"},
		Steps: []podmanager.Step{
			{Step: "sandbox", Start: t0, Duration: podmanager.Duration(812 * time.Millisecond)},
			{Step: "network", Start: t0.Add(100 * time.Millisecond), Duration: podmanager.Duration(640 * time.Millisecond)},
			{Step: "image", Container: "a", Start: t0.Add(time.Second), Duration: podmanager.Duration(2100 * time.Millisecond), Detail: "pulled",
				LastError: "Failed to pull: connection refused", LastErrorTime: cliNow.Add(-3 * time.Minute), Failures: 1},
			{Step: "create", Container: "a", Start: t0.Add(4 * time.Second), Duration: podmanager.Duration(40 * time.Millisecond), Error: "no space left", LastError: "no space left", LastErrorTime: cliNow.Add(-10 * time.Second), Failures: 2},
		},
		Backoffs: []podmanager.BackoffInfo{{Key: "container/a", Wait: podmanager.Duration(20 * time.Second), RetryAt: cliNow.Add(12 * time.Second)}},
		Events: []podmanager.Event{
			{Type: "Normal", Reason: "Pulled", Message: `Successfully pulled image "busybox:1.36" in 2.1s`, FirstTime: t0, LastTime: t0, Count: 1},
			{Type: "Warning", Reason: "Failed", Message: "Error: no space left", FirstTime: cliNow.Add(-time.Minute), LastTime: cliNow.Add(-10 * time.Second), Count: 2},
		},
	}
}

func TestDescribeShowsStatusTimelineErrorsAndEvents(t *testing.T) {
	pod := podWith("web", v1.PodPending, []string{"a"}, waiting("a", "CreateContainerError", 0))
	pod.Labels = map[string]string{"app": "web", "tier": "front"}
	pod.Spec.NodeName = "node1"
	pod.Status.HostIP = "192.0.2.10"
	pod.Status.PodIP = "10.88.0.5"
	pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionFalse}}
	var out bytes.Buffer
	if err := printDescribe(&out, &pod, testDebug(), cliNow); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"Name:",
		"Node:        node1/192.0.2.10",
		"Labels:      app=web\n             tier=front\n",
		"Status:      CreateContainerError",
		"IP:          10.88.0.5",
		"    Restart Backoff:   20s (retry in 12s)",
		"  Ready   False",
		"Timeline (last sync 5s ago, sync, took 3ms):",
		"  STEP      CONTAINER   STARTED        DURATION   RESULT\n",
		"  sandbox   -           11:58:00.000   812ms      ok\n",
		"  image     a           11:58:01.000   2.1s       pulled\n",
		"  create    a           11:58:04.000   40ms       failed: no space left\n",
		"Last Errors:\n  image a (3m ago, 1 failed): Failed to pull: connection refused\n  create a (10s ago, 2 failed): no space left\n",
		"  Warning   Failed   10s (x2 over 60s)   nodeagent   Error: no space left\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("describe output lacks %q:\n%s", want, got)
		}
	}
}

func TestDescribeAndPodsReadTheDebugServerWithTheToken(t *testing.T) {
	pod := podWith("web", v1.PodRunning, []string{"a"}, running("a", true, 0))
	pod.Status.PodIP = "10.88.0.5"
	other := pod
	other.Namespace, other.UID = "other", "uid-other"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/pods":
			_ = json.NewEncoder(w).Encode(v1.PodList{Items: []v1.Pod{pod, other}})
		case "/debug/pods/uid-web":
			_ = json.NewEncoder(w).Encode(testDebug())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	code, ok := runCLI([]string{"pods", "--debug-address", addr, "--debug-token-file", tokenFile}, &out, &errOut)
	if !ok || code != 0 || !strings.Contains(out.String(), "10.88.0.5") || !strings.Contains(out.String(), "other ") {
		t.Fatalf("pods: %d %v\n%s%s", code, ok, out.String(), errOut.String())
	}

	out.Reset()
	code, _ = runCLI([]string{"describe", "web", "-n", "default", "--debug-address", addr, "--debug-token-file", tokenFile}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "uid-web") || !strings.Contains(out.String(), "sandbox") {
		t.Fatalf("describe: %d\n%s%s", code, out.String(), errOut.String())
	}

	errOut.Reset()
	code, _ = runCLI([]string{"describe", "web", "--debug-address", addr, "--debug-token-file", tokenFile}, &out, &errOut)
	if code != 0 {
		t.Fatalf("describe without -n should pick default/web: %d %s", code, errOut.String())
	}

	errOut.Reset()
	code, _ = runCLI([]string{"pods", "--debug-address", addr}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "--debug-token-file") {
		t.Fatalf("pods without the token: %d %q, want 1 and a hint", code, errOut.String())
	}
	errOut.Reset()
	code, _ = runCLI([]string{"describe", "ghost", "--debug-address", addr, "--debug-token-file", tokenFile}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), `pod "ghost" not found`) {
		t.Fatalf("describe ghost: %d %q", code, errOut.String())
	}
	errOut.Reset()
	code, _ = runCLI([]string{"describe"}, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "usage") {
		t.Fatalf("describe without a name: %d %q", code, errOut.String())
	}
	if _, ok := runCLI([]string{"--node-name", "x"}, &out, &errOut); ok {
		t.Fatal("flags of the agent were taken for a subcommand")
	}
}
