package podmanager

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An instance the runtime reports UNKNOWN for good (containerd restarted in the middle of its
// create) is killed and replaced, as the kubelet does, for app and init containers alike,
// whatever the restart policy; before, the pod waited for it forever.
func TestContainerInAnUnknownStateIsKilledAndReplaced(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy v1.RestartPolicy
		init   bool
	}{
		{"app container, Always", v1.RestartPolicyAlways, false},
		{"app container, Never", v1.RestartPolicyNever, false},
		{"init container", v1.RestartPolicyAlways, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			pod := testPod("unknown", tc.policy, busybox("main"))
			name := "main"
			if tc.init {
				pod.Spec.InitContainers = []v1.Container{busybox("setup")}
				name = "setup"
			}
			h.run(pod)
			h.settle(pod.UID)
			first := h.rt.byName(name)[0]
			h.rt.mu.Lock()
			first.c.State, first.status.State = runtimeapi.ContainerState_CONTAINER_UNKNOWN, runtimeapi.ContainerState_CONTAINER_UNKNOWN
			h.rt.mu.Unlock()
			h.settle(pod.UID)
			insts := h.rt.byName(name)
			if len(insts) != 2 {
				t.Fatalf("%d instances of %s, want the unknown one replaced", len(insts), name)
			}
			if _, stopped := h.rt.stopTimeouts[first.c.Id]; !stopped {
				t.Fatal("the unknown instance was not stopped before the new one started")
			}
		})
	}
}
