package kube

import (
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// TestTerminationMessagesAndInitReadinessShowInKubectl is what `kubectl get pod -o yaml`
// shows of finished containers: the message a container wrote to its terminationMessagePath
// (as root and as another user, at the default path and a custom one), the tail of its log
// under FallbackToLogsOnError when it failed without writing one, and ready: true for an
// init container that succeeded.
func TestTerminationMessagesAndInitReadinessShowInKubectl(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: messages, namespace: %[1]s}
spec:
  nodeName: %[2]s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: setup
    image: %[3]s
    imagePullPolicy: IfNotPresent
    command: ["true"]
  containers:
  - name: root
    image: %[3]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "printf 'written by root' > /dev/termination-log"]
  - name: user
    image: %[3]s
    imagePullPolicy: IfNotPresent
    securityContext: {runAsUser: 1000, runAsGroup: 1000}
    terminationMessagePath: /tmp/my-message
    command: ["sh", "-c", "printf 'written by 1000' > /tmp/my-message; exit 1"]
  - name: fallback
    image: %[3]s
    imagePullPolicy: IfNotPresent
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo first; echo last; exit 7"]
  - name: quiet
    image: %[3]s
    imagePullPolicy: IfNotPresent
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo not a message"]
`, ns, a.NodeName, framework.TB.BusyboxImage))
	p := waitAPIPod(t, ns, "messages", startTimeout, "Failed", phaseIs(v1.PodFailed))

	want := map[string]string{
		"root":     "written by root",
		"user":     "written by 1000",
		"fallback": "first\nlast\n",
		"quiet":    "",
	}
	for _, cs := range p.Status.ContainerStatuses {
		term := cs.State.Terminated
		if term == nil {
			t.Errorf("%s: state %+v, want terminated", cs.Name, cs.State)
			continue
		}
		if term.Message != want[cs.Name] {
			t.Errorf("%s: message %q, want %q", cs.Name, term.Message, want[cs.Name])
		}
	}
	if len(p.Status.InitContainerStatuses) != 1 || !p.Status.InitContainerStatuses[0].Ready {
		t.Errorf("init container statuses %+v, want setup ready", p.Status.InitContainerStatuses)
	}
}

// TestObservedGenerationConvergesAfterManyQuickUpdates: after 100 spec updates in a row
// (activeDeadlineSeconds lowered each time), the status and every condition the node writes
// report the pod's latest generation.
func TestObservedGenerationConvergesAfterManyQuickUpdates(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, sleepingPod("gen", ns, a.NodeName, "activeDeadlineSeconds: 1000000"))
	waitAPIPod(t, ns, "gen", startTimeout, "Running", phaseIs(v1.PodRunning))
	for i := 1; i <= 100; i++ {
		kubectl(t, "patch", "pod", "-n", ns, "gen", "--type=merge",
			"-p", fmt.Sprintf(`{"spec":{"activeDeadlineSeconds":%d}}`, 1000000-i))
	}
	waitAPIPod(t, ns, "gen", 60*time.Second, "observed at its latest generation", func(p *v1.Pod) bool {
		if p.Generation < 101 || p.Status.ObservedGeneration != p.Generation {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.ObservedGeneration != p.Generation {
				return false
			}
		}
		return true
	})
}

// TestReadinessGateHoldsReadyUntilItsConditionIsTrue: a pod with a readiness gate is not
// Ready, with the kubelet's reason, until someone sets the gate's condition True.
func TestReadinessGateHoldsReadyUntilItsConditionIsTrue(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, sleepingPod("gated", ns, a.NodeName, "readinessGates: [{conditionType: example.com/lb}]"))
	ready := func(p *v1.Pod) v1.PodCondition {
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodReady {
				return c
			}
		}
		return v1.PodCondition{}
	}
	waitAPIPod(t, ns, "gated", startTimeout, "Running, not Ready for its gate", func(p *v1.Pod) bool {
		c := ready(p)
		return p.Status.Phase == v1.PodRunning && c.Status == v1.ConditionFalse && c.Reason == "ReadinessGatesNotReady"
	})
	kubectl(t, "patch", "pod", "-n", ns, "gated", "--subresource=status", "--type=json",
		"-p", `[{"op":"add","path":"/status/conditions/-","value":{"type":"example.com/lb","status":"True"}}]`)
	waitAPIPod(t, ns, "gated", 30*time.Second, "Ready", func(p *v1.Pod) bool { return ready(p).Status == v1.ConditionTrue })
}

// TestActiveDeadlineLoweredOnARunningPodFailsIt: lowering activeDeadlineSeconds below the
// pod's age kills it; kubectl shows it Failed with reason DeadlineExceeded.
func TestActiveDeadlineLoweredOnARunningPodFailsIt(t *testing.T) {
	t.Parallel()
	a, ns := node(t)
	kubectlApply(t, sleepingPod("deadline", ns, a.NodeName, "activeDeadlineSeconds: 100000"))
	waitAPIPod(t, ns, "deadline", startTimeout, "Running", phaseIs(v1.PodRunning))
	kubectl(t, "patch", "pod", "-n", ns, "deadline", "--type=merge", "-p", `{"spec":{"activeDeadlineSeconds":1}}`)
	p := waitAPIPod(t, ns, "deadline", 60*time.Second, "Failed for its deadline", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodFailed && p.Status.Reason == "DeadlineExceeded"
	})
	if p.Status.Message != "Pod was active on the node longer than the specified deadline" {
		t.Errorf("message %q", p.Status.Message)
	}
	if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil {
		t.Errorf("container statuses %+v, want terminated", cs)
	}
}

// sleepingPod is a busybox pod bound to node that sleeps, with the given lines added to its
// spec (each one line of YAML at spec level).
func sleepingPod(name, ns, node string, spec ...string) string {
	var extra strings.Builder
	for _, l := range spec {
		extra.WriteString("  " + l + "\n")
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
%s  containers:
  - name: sleep
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
`, name, ns, node, extra.String(), framework.TB.BusyboxImage)
}
