package images

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func podWithImage(name, image, policy string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: %s
    command: ["sleep", "100000"]
`, name, image, policy)
}

func TestNeverPolicyWithMissingImageIsErrImageNeverPull(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("never.yaml", podWithImage("never", "nodeagent.local/absent:1", "Never"))
	pod := a.WaitPod("never", 30*time.Second, "waiting with ErrImageNeverPull", func(p *v1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason == "ErrImageNeverPull" {
				return true
			}
		}
		return false
	})
	if pod.Status.Phase != v1.PodPending {
		t.Fatalf("phase = %s, want Pending", pod.Status.Phase)
	}
	if msg := pod.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "nodeagent.local/absent:1") {
		t.Fatalf("message %q does not name the image", msg)
	}
}

func TestImageIsPulledFromTheLocalRegistry(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	image := framework.TB.Registry + "/busybox:1.36"
	ctx := context.Background()
	// Start from an image that is not there, so the pull really happens.
	_ = framework.TB.CRI.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: image})

	a.WriteManifest("pulled.yaml", podWithImage("pulled", image, "IfNotPresent"))
	pod := a.WaitRunning("pulled", 90*time.Second)
	img, err := framework.TB.CRI.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: image})
	if err != nil || img == nil {
		t.Fatalf("image %s is not in the runtime after the pod started: %v", image, err)
	}
	if id := pod.Status.ContainerStatuses[0].ImageID; id == "" {
		t.Fatal("container status has no imageID")
	}
	a.WaitLog(5*time.Second, "image pulled", image)
}

func TestFailedPullIsErrImagePullThenBackOff(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	image := framework.TB.Registry + "/no-such-image:1"
	a.WriteManifest("missing.yaml", podWithImage("missing", image, "IfNotPresent"))
	seen := map[string]bool{}
	a.WaitPod("missing", 60*time.Second, "through ErrImagePull and ImagePullBackOff", func(p *v1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				seen[w.Reason] = true
			}
		}
		return seen["ErrImagePull"] && seen["ImagePullBackOff"] || seen["ImagePullBackOff"]
	})
	if p := a.FindPod("missing"); p == nil || p.Status.Phase != v1.PodPending {
		t.Fatalf("pod = %v, want Pending", p)
	}
}
