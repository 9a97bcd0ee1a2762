package probes

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

const (
	startTimeout = 60 * time.Second
	// flipTimeout is how long a one-second probe may take to notice a change and the status
	// to show it: a few periods, very generously, since on a loaded CI machine a probe (an
	// exec through containerd above all) can take seconds.
	flipTimeout = 45 * time.Second
)

// serverPod is a pod running hack/testserver with args in a container named "server"; spec
// is more of the container's YAML (probes, lifecycle, ports), indented by four spaces.
func serverPod(name string, grace int, args []string, spec string) string {
	if args == nil {
		args = []string{}
	}
	a, _ := json.Marshal(args) // a JSON list is a YAML flow sequence
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: %d
  containers:
  - name: server
    image: %s
    imagePullPolicy: IfNotPresent
    args: %s
%s`, name, grace, framework.TB.TestserverImage, a, spec)
}

// containerStatus is the named container's status in p; nil if p or the status is missing.
func containerStatus(p *v1.Pod, name string) *v1.ContainerStatus {
	if p == nil {
		return nil
	}
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func condition(p *v1.Pod, typ v1.PodConditionType) v1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// readyIs holds when the "server" container runs and the pod's Ready and ContainersReady
// conditions and the container's ready flag all say want.
func readyIs(want bool) func(*v1.Pod) bool {
	st := v1.ConditionFalse
	if want {
		st = v1.ConditionTrue
	}
	return func(p *v1.Pod) bool {
		cs := containerStatus(p, "server")
		return cs != nil && p.Status.Phase == v1.PodRunning && cs.State.Running != nil && cs.Ready == want &&
			condition(p, v1.PodReady) == st && condition(p, v1.ContainersReady) == st
	}
}

// readiness names a readyIs state for messages.
func readiness(want bool) string {
	if want {
		return "running and ready"
	}
	return "running and not ready"
}

// describe is the part of a pod's status these tests look at, for failure messages.
func describe(p *v1.Pod) string {
	if p == nil {
		return "pod not in /pods"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s, Ready %s, ContainersReady %s", p.Status.Phase, condition(p, v1.PodReady), condition(p, v1.ContainersReady))
	for _, cs := range p.Status.ContainerStatuses {
		st, _ := json.Marshal(cs.State)
		last, _ := json.Marshal(cs.LastTerminationState)
		started := "nil"
		if cs.Started != nil {
			started = fmt.Sprint(*cs.Started)
		}
		fmt.Fprintf(&b, "; %s: ready %v, started %s, restarts %d, state %s, lastState %s", cs.Name, cs.Ready, started, cs.RestartCount, st, last)
	}
	return b.String()
}

// runningContainer is the running instance of the pod's container, as crictl ps shows it.
func runningContainer(t *testing.T, a *framework.Agent, pod, container string) *runtimeapi.Container {
	t.Helper()
	return a.Running(t, map[string]string{cri.LabelPodName: a.PodName(pod)}, container)
}

// execIn runs cmd in the pod's running container and fails the test unless it exits 0.
func execIn(t *testing.T, a *framework.Agent, pod, container string, cmd ...string) {
	t.Helper()
	framework.MustExec(t, runningContainer(t, a, pod, container).Id, cmd...)
}

// criStartedAt is when the runtime started the container instance.
func criStartedAt(t *testing.T, id string) time.Time {
	t.Helper()
	st, err := framework.TB.CRI.ContainerStatus(context.Background(), id, false)
	if err != nil {
		t.Fatalf("container status %s: %v", id, err)
	}
	return time.Unix(0, st.Status.StartedAt)
}

// consistently checks cond until d has passed and fails the test the first time it does
// not hold: for "this must not happen", which only a while of watching can show.
func consistently(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ok, msg := cond(); !ok {
			t.Fatalf("within %s: %s", d, msg)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
