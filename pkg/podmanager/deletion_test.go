package podmanager

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodBeingDeletedIsTerminatedWithItsGraceAndReported(t *testing.T) {
	h := newHarness(t)
	var terminated []*v1.Pod
	h.m.cfg.PodTerminated = func(p *v1.Pod) { terminated = append(terminated, p) }
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a", "sleep", "1000"))
	h.run(pod)
	h.settle(pod.UID)

	// The API server marks it for deletion with a 3 s grace; it stays in the source's set.
	deleting := pod.DeepCopy()
	now := metav1.Now()
	grace := int64(3)
	deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds = &now, &grace
	h.run(deleting)
	w := h.m.workers[pod.UID]
	if _, done := w.syncOnce(t.Context()); !done {
		t.Fatal("the worker did not finish after terminating the pod")
	}
	if len(terminated) != 1 || terminated[0].UID != pod.UID || terminated[0].DeletionTimestamp == nil {
		t.Fatalf("PodTerminated calls: %v", terminated)
	}
	for id, timeout := range h.rt.stopTimeouts {
		if timeout != grace {
			t.Errorf("container %s stopped with timeout %d, want the deletion grace %d", id, timeout, grace)
		}
	}
	if len(h.rt.stopTimeouts) == 0 {
		t.Error("no container was stopped")
	}
	if n := h.rt.count("RemovePodSandbox"); n != 1 {
		t.Errorf("RemovePodSandbox called %d times", n)
	}
}

func TestAliveFollowsTheSyncLoop(t *testing.T) {
	h := newHarness(t)
	if err := h.m.Alive(); err == nil {
		t.Fatal("alive before the loop ran")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	go func() { h.m.Run(ctx); close(stopped) }()
	waitAlive := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for h.m.Alive() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("not alive %s: %v", what, h.m.Alive())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitAlive("after the first relist")
	// Time passes; the loop's ticker relists, which keeps the agent alive.
	h.clk.Step(3*h.m.cfg.RelistPeriod + time.Second)
	waitAlive("while the loop keeps relisting")

	// The loop stops relisting (wedged, here stopped): three periods later it is not alive.
	cancel()
	<-stopped
	h.clk.Step(3*h.m.cfg.RelistPeriod + time.Second)
	if err := h.m.Alive(); err == nil || !strings.Contains(err.Error(), "has not relisted for") {
		t.Fatalf("Alive() = %v", err)
	}
}

func TestOnlyAChangedPodWakesItsWorker(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	h.run(pod)
	w := h.m.workers[pod.UID]
	<-w.wake // the new worker's first wake

	// The API server wrote the pod's status: resourceVersion and status differ, nothing else.
	same := pod.DeepCopy()
	same.ResourceVersion, same.Status.Phase = "42", v1.PodRunning
	h.run(same)
	select {
	case <-w.wake:
		t.Fatal("a status-only change woke the worker")
	default:
	}

	edited := same.DeepCopy()
	edited.Labels["tier"] = "front"
	h.run(edited)
	select {
	case <-w.wake:
	default:
		t.Fatal("a label change did not wake the worker")
	}
}
