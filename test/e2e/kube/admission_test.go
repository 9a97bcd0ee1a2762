package kube

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func sysctlPod(name, ns, node, sysctl, value string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext:
    sysctls: [{name: %s, value: %q}]
  containers:
  - name: show
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /proc/sys/$(echo %s | tr . /)"]
`, name, ns, node, sysctl, value, framework.TB.BusyboxImage, sysctl)
}

// TestSysctlsAreAdmittedAsTheKubeletDoes: a safe sysctl and an unsafe one the node allows
// (--allowed-unsafe-sysctls) are set in the pod; any other is refused at admission, the pod
// Failed with reason SysctlForbidden and nothing started.
func TestSysctlsAreAdmittedAsTheKubeletDoes(t *testing.T) {
	t.Parallel()
	// The node API's client CA lets kubectl logs through; the unsafe sysctl is the node's choice.
	a, ns := node(t, "--client-ca-file", cluster.CAFile, "--allowed-unsafe-sysctls=net.core.somaxconn")
	kubectlApply(t, sysctlPod("safe", ns, a.NodeName, "net.ipv4.ip_unprivileged_port_start", "77"))
	kubectlApply(t, sysctlPod("allowed", ns, a.NodeName, "net.core.somaxconn", "1234"))
	kubectlApply(t, sysctlPod("forbidden", ns, a.NodeName, "kernel.sem", "250 32000 32 128"))

	for name, want := range map[string]string{"safe": "77\n", "allowed": "1234\n"} {
		waitAPIPod(t, ns, name, startTimeout, "Succeeded", phaseIs(v1.PodSucceeded))
		if out := kubectl(t, "logs", "-n", ns, name); out != want {
			t.Errorf("%s: the container read %q, want %q", name, out, want)
		}
	}
	p := waitAPIPod(t, ns, "forbidden", startTimeout, "Failed", phaseIs(v1.PodFailed))
	if p.Status.Reason != "SysctlForbidden" || p.Status.Message != `Pod was rejected: forbidden sysctl: "kernel.sem" not allowlisted` {
		t.Errorf("forbidden: reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	if n := len(a.Sandboxes(map[string]string{cri.LabelPodUID: string(p.UID)})); n != 0 {
		t.Errorf("%d sandboxes made for a rejected pod", n)
	}
}
