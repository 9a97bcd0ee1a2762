package podmanager

import (
	"errors"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeNetwork is the network service's readiness, switchable by the test.
type fakeNetwork struct {
	mu  sync.Mutex
	err error
}

func (f *fakeNetwork) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeNetwork) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func conditionOf(s v1.PodStatus, t v1.PodConditionType) v1.PodCondition {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c
		}
	}
	return v1.PodCondition{}
}

func TestPodsWaitForTheNetworkButHostNetworkPodsDoNot(t *testing.T) {
	h := newHarness(t)
	net := &fakeNetwork{err: errors.New(`missing plugin binary "bandwidth" in /opt/cni/bin`)}
	h.m.cfg.Network = net
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"))
	host := testPod("host", v1.RestartPolicyAlways, busybox("a"))
	host.Spec.HostNetwork = true
	h.run(pod, host)

	s := h.settle(pod.UID)
	if n := h.rt.count("RunPodSandbox"); n != 0 {
		// The host-network pod has not synced yet; nothing may have been created for web.
		t.Fatalf("%d sandboxes created while the network is not ready", n)
	}
	c := conditionOf(s, v1.PodReadyToStartContainers)
	if s.Phase != v1.PodPending || c.Status != v1.ConditionFalse || c.Reason != "NetworkNotReady" ||
		!strings.Contains(c.Message, `missing plugin binary "bandwidth"`) {
		t.Fatalf("phase %s, condition %+v", s.Phase, c)
	}

	if hs := h.settle(host.UID); hs.Phase != v1.PodRunning {
		t.Fatalf("host-network pod: phase %s", hs.Phase)
	}

	net.set(nil)
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning || conditionOf(s, v1.PodReadyToStartContainers).Reason != "" {
		t.Fatalf("after the network is ready: phase %s, conditions %+v", s.Phase, s.Conditions)
	}
}

func TestFailedNetworkCheckReplacesTheSandbox(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", v1.RestartPolicyAlways, busybox("a"), busybox("b"))
	h.run(pod)
	h.settle(pod.UID)
	var old string
	for id := range h.rt.sandboxes {
		old = id
	}

	// A CHECK failure about another sandbox of the pod is stale and changes nothing.
	h.m.NetworkCheckFailed(pod.UID, "gone", errors.New("old"))
	h.settle(pod.UID)
	if h.rt.sandboxes[old].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatal("a stale CHECK failure stopped the current sandbox")
	}

	h.m.NetworkCheckFailed(pod.UID, old, errors.New(`bridge: interface "eth0" not found`))
	s := h.settle(pod.UID)
	if h.rt.sandboxes[old].State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatal("the broken sandbox is still ready")
	}
	ready := 0
	for _, sb := range h.rt.sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready++
		}
	}
	if ready != 1 || s.Phase != v1.PodRunning {
		t.Fatalf("%d ready sandboxes, phase %s", ready, s.Phase)
	}
	for _, name := range []string{"a", "b"} {
		cs := containerState(t, s, name)
		if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil ||
			!strings.Contains(cs.LastTerminationState.Terminated.Message, `failed CNI CHECK, the pod sandbox is re-created: bridge: interface "eth0" not found`) {
			t.Errorf("container %s: restarts %d, last state %+v", name, cs.RestartCount, cs.LastTerminationState)
		}
	}
}
