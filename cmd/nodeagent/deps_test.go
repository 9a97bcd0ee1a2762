package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryLinksNoClientset keeps client-go's clientset out of the agent: its typed client
// packages register every type of every API group at start, which cost about 9 MiB of RSS
// (the ≤ 40 MiB at 100 pods target) and 33 MB of binary. The agent's API calls go through
// pkg/controlplane/kubeclient instead.
func TestBinaryLinksNoClientset(t *testing.T) {
	for _, pkg := range []string{".", "../nodeagent-cni"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "k8s.io/client-go/kubernetes" || strings.HasPrefix(dep, "k8s.io/client-go/kubernetes/") {
				t.Errorf("%s links %s; use pkg/controlplane/kubeclient", pkg, dep)
			}
		}
	}
}
