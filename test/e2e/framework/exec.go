package framework

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// Exec runs cmd in container id through CRI ExecSync, as kubectl exec does, and returns its
// stdout, stderr and exit code. A non-zero exit is the caller's to judge; a failed runtime
// call fails the test.
func Exec(t *testing.T, id string, cmd ...string) (stdout, stderr string, code int32) {
	t.Helper()
	// Generous: a loaded CI machine can take seconds to start an exec.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, errOut, code, err := TB.CRI.ExecSync(ctx, id, cmd, 30*time.Second)
	if err != nil {
		t.Fatalf("exec %q in container %s: %v", cmd, id, err)
	}
	return string(out), string(errOut), code
}

// MustExec is Exec that also fails the test unless cmd exits 0; it returns stdout.
func MustExec(t *testing.T, id string, cmd ...string) string {
	t.Helper()
	stdout, stderr, code := Exec(t, id, cmd...)
	if code != 0 {
		t.Fatalf("exec %q in container %s: exit %d; stdout %q, stderr %q", cmd, id, code, stdout, stderr)
	}
	return stdout
}

// Running returns the one running instance of container in this agent's pod selected by
// podLabels (cri.LabelPodName with a.PodName(name), or cri.LabelPodUID); the test fails
// unless exactly one runs.
func (a *Agent) Running(t *testing.T, podLabels map[string]string, container string) *runtimeapi.Container {
	t.Helper()
	sel := map[string]string{cri.LabelContainerName: container}
	for k, v := range podLabels {
		sel[k] = v
	}
	var running []*runtimeapi.Container
	for _, c := range a.Containers(sel) {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running = append(running, c)
		}
	}
	if len(running) != 1 {
		t.Fatalf("pod %v: %d running instances of container %s, want 1", podLabels, len(running), container)
	}
	return running[0]
}
