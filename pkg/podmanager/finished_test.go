package podmanager

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod whose source says it finished (an agent restart after its containers were removed,
// an eviction written by someone else) never gets anything started again, whatever its
// restart policy, and its status keeps the final phase the source has.
func TestPodTheSourceSaysFinishedNeverStartsAndKeepsItsStatus(t *testing.T) {
	for _, phase := range []v1.PodPhase{v1.PodSucceeded, v1.PodFailed} {
		t.Run(string(phase), func(t *testing.T) {
			h := newHarness(t)
			pod := testPod("done", v1.RestartPolicyAlways, busybox("main"))
			pod.Status = v1.PodStatus{Phase: phase, Reason: "Evicted", Message: "gone"}
			h.run(pod)
			s := h.settle(pod.UID)
			if n := len(h.rt.sandboxes); n != 0 {
				t.Fatalf("%d sandboxes made for a finished pod", n)
			}
			if n := len(h.rt.byName("main")); n != 0 {
				t.Fatalf("%d containers made for a finished pod", n)
			}
			if s.Phase != phase || s.Reason != "Evicted" {
				t.Fatalf("status %s/%s, want the source's %s/Evicted", s.Phase, s.Reason, phase)
			}
		})
	}
}

// A pod that finished here keeps its container (for logs) once the source reports it
// finished too, and its status is the one computed from the runtime.
func TestFinishedPodKeepsItsContainersWhenTheSourceAgrees(t *testing.T) {
	h := newHarness(t)
	pod := testPod("job", v1.RestartPolicyNever, busybox("main"))
	h.run(pod)
	h.settle(pod.UID)
	h.rt.exit("main", 0)
	s := h.settle(pod.UID)
	if s.Phase != v1.PodSucceeded {
		t.Fatalf("phase %s", s.Phase)
	}
	reported := pod.DeepCopy()
	reported.Status = s
	h.run(reported)
	s = h.settle(pod.UID)
	if s.Phase != v1.PodSucceeded || containerState(t, s, "main").State.Terminated == nil {
		t.Fatalf("status after the source agreed: %+v", s)
	}
	cs := h.rt.byName("main")
	if len(cs) != 1 || cs[0].c.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("containers %v, want the one exited instance kept", cs)
	}
}

// The status and each condition say which generation of the spec they were computed for, and
// follow every update.
func TestStatusFollowsTheObservedGeneration(t *testing.T) {
	h := newHarness(t)
	pod := testPod("gen", v1.RestartPolicyAlways, busybox("main"))
	for gen := int64(1); gen <= 50; gen++ {
		p := pod.DeepCopy()
		p.Generation = gen
		deadline := 100000 - gen
		p.Spec.ActiveDeadlineSeconds = &deadline
		h.run(p)
	}
	s := h.settle(pod.UID)
	if s.ObservedGeneration != 50 {
		t.Fatalf("status observedGeneration %d, want 50", s.ObservedGeneration)
	}
	for _, c := range s.Conditions {
		if c.ObservedGeneration != 50 {
			t.Fatalf("condition %s observedGeneration %d, want 50", c.Type, c.ObservedGeneration)
		}
	}
}
