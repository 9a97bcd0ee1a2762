package podmanager

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func readyCondition(s v1.PodStatus) v1.PodCondition {
	for _, c := range s.Conditions {
		if c.Type == v1.PodReady {
			return c
		}
	}
	return v1.PodCondition{}
}

// A pod is Ready only once every readiness gate's condition, written by someone else, is
// True; a change of that condition wakes the worker although it is in the status.
func TestReadinessGatesHoldReadyUntilTheirConditionsAreTrue(t *testing.T) {
	h := newHarness(t)
	pod := testPod("gated", v1.RestartPolicyAlways, busybox("main"))
	pod.Spec.ReadinessGates = []v1.PodReadinessGate{{ConditionType: "example.com/lb"}}
	h.run(pod)
	s := h.settle(pod.UID)
	if c := readyCondition(s); c.Status != v1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" ||
		c.Message != `corresponding condition of pod readiness gate "example.com/lb" does not exist.` {
		t.Fatalf("Ready %+v without the gate's condition", c)
	}

	w := h.m.workers[pod.UID]
	select { // drain the first wake
	case <-w.wake:
	default:
	}
	falseGate := pod.DeepCopy()
	falseGate.Status.Conditions = []v1.PodCondition{{Type: "example.com/lb", Status: v1.ConditionFalse}}
	h.run(falseGate)
	select {
	case <-w.wake:
	default:
		t.Fatal("the gate's condition appearing did not wake the worker")
	}
	if c := readyCondition(h.settle(pod.UID)); c.Status != v1.ConditionFalse || !strings.Contains(c.Message, `is not "True", but False`) {
		t.Fatalf("Ready %+v with the gate False", c)
	}

	trueGate := pod.DeepCopy()
	trueGate.Status.Conditions = []v1.PodCondition{{Type: "example.com/lb", Status: v1.ConditionTrue}}
	h.run(trueGate)
	if c := readyCondition(h.settle(pod.UID)); c.Status != v1.ConditionTrue {
		t.Fatalf("Ready %+v with the gate True", c)
	}
}
