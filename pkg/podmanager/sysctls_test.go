package podmanager

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestSysctlAllowlistFollowsTheKubelet(t *testing.T) {
	a, err := newSysctlAllowlist([]string{"net.core.somaxconn", "kernel.msg*"}, "6.1.0-18-amd64")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		hostNet, ipc bool
		sysctls      []string
		want         string
	}{
		{"safe", false, false, []string{"kernel.shm_rmid_forced", "net.ipv4.tcp_rmem"}, ""},
		{"slash form of a safe one", false, false, []string{"net/ipv4/ip_local_port_range"}, ""},
		{"allowed unsafe name", false, false, []string{"net.core.somaxconn"}, ""},
		{"allowed unsafe pattern", false, false, []string{"kernel.msgmax"}, ""},
		{"not allowed", false, false, []string{"kernel.sem"}, `forbidden sysctl: "kernel.sem" not allowlisted`},
		{"net sysctl with hostNetwork", true, false, []string{"net.ipv4.tcp_syncookies"}, `forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with host net enabled`},
		{"ipc sysctl with hostIPC", false, true, []string{"kernel.shm_rmid_forced"}, `not allowed with host ipc enabled`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.check(tc.hostNet, tc.ipc, tc.sysctls); !strings.Contains(got, tc.want) || (tc.want == "") != (got == "") {
				t.Fatalf("check = %q, want %q", got, tc.want)
			}
		})
	}
	old, _ := newSysctlAllowlist(nil, "4.4.0")
	if got := old.check(false, false, []string{"net.ipv4.tcp_wmem"}); got == "" {
		t.Fatal("tcp_wmem allowed on a kernel where it is not namespaced")
	}
	if _, err := newSysctlAllowlist([]string{"vm.swappiness"}, ""); err == nil || !strings.Contains(err.Error(), `"vm.swappiness" are not known to be namespaced`) {
		t.Fatalf("a non-namespaced unsafe sysctl: %v", err)
	}
}

func TestPodWithAForbiddenSysctlIsRejectedAndNeverStarted(t *testing.T) {
	h := newHarness(t)
	pod := testPod("sysctl", v1.RestartPolicyAlways, busybox("main"))
	pod.Spec.SecurityContext = &v1.PodSecurityContext{Sysctls: []v1.Sysctl{{Name: "kernel.sem", Value: "1 2 3 4"}}}
	h.run(pod)
	s := h.settle(pod.UID)
	if s.Phase != v1.PodFailed || s.Reason != "SysctlForbidden" ||
		s.Message != `Pod was rejected: forbidden sysctl: "kernel.sem" not allowlisted` {
		t.Fatalf("status %s/%s/%q", s.Phase, s.Reason, s.Message)
	}
	if len(h.rt.sandboxes) != 0 {
		t.Fatal("a sandbox was made for a rejected pod")
	}
}
