package podmanager

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodPastItsActiveDeadlineIsKilledAndFailed(t *testing.T) {
	h := newHarness(t)
	pod := testPod("deadline", v1.RestartPolicyAlways, busybox("main"))
	d := int64(30)
	pod.Spec.ActiveDeadlineSeconds = &d
	h.run(pod)
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning {
		t.Fatalf("phase %s before the deadline", s.Phase)
	}
	h.clk.Step(29 * time.Second)
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning {
		t.Fatalf("phase %s a second before the deadline", s.Phase)
	}
	h.clk.Step(2 * time.Second)
	s := h.settle(pod.UID)
	if s.Phase != v1.PodFailed || s.Reason != "DeadlineExceeded" || s.Message != "Pod was active on the node longer than the specified deadline" {
		t.Fatalf("status %s/%s/%q, want Failed/DeadlineExceeded", s.Phase, s.Reason, s.Message)
	}
	insts := h.rt.byName("main")
	if len(insts) != 1 || insts[0].c.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("containers %v, want the one instance stopped and none restarted", insts)
	}
	h.clk.Step(time.Minute)
	h.settle(pod.UID)
	if n := len(h.rt.byName("main")); n != 1 {
		t.Fatalf("%d instances: a pod past its deadline was restarted", n)
	}
	for _, sb := range h.rt.sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Fatal("the sandbox of a pod past its deadline is still ready")
		}
	}
}

func TestLoweredActiveDeadlineTakesEffect(t *testing.T) {
	h := newHarness(t)
	pod := testPod("lowered", v1.RestartPolicyAlways, busybox("main"))
	long := int64(3600)
	pod.Spec.ActiveDeadlineSeconds = &long
	h.run(pod)
	h.settle(pod.UID)
	h.clk.Step(10 * time.Second)
	lowered := pod.DeepCopy()
	short := int64(5)
	lowered.Spec.ActiveDeadlineSeconds = &short
	h.run(lowered)
	if s := h.settle(pod.UID); s.Phase != v1.PodFailed || s.Reason != "DeadlineExceeded" {
		t.Fatalf("status %s/%s after lowering the deadline below the pod's age", s.Phase, s.Reason)
	}
}
