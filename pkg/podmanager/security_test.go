package podmanager

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// TestRunAsNonRootIsCheckedAgainstTheImageUser: what a user sees for each combination of
// runAsNonRoot, runAsUser and the image's user — the container runs, or waits with
// CreateContainerConfigError and the kubelet's message.
func TestRunAsNonRootIsCheckedAgainstTheImageUser(t *testing.T) {
	yes, no := true, false
	root, user := int64(0), int64(1000)
	tests := []struct {
		name      string
		imageUser string
		pod, ctr  *v1.SecurityContext // pod's runAsNonRoot/runAsUser given as a container context for brevity
		wantErr   string              // "" runs
		pull      bool                // imagePullPolicy Always: the user is read after the pull
	}{
		{name: "not asked, root image", imageUser: ""},
		{name: "image without user is root", ctr: &v1.SecurityContext{RunAsNonRoot: &yes}, wantErr: "image will run as root"},
		{name: "image user 0", imageUser: "0", ctr: &v1.SecurityContext{RunAsNonRoot: &yes}, wantErr: "image will run as root"},
		{name: "image user 1000", imageUser: "1000", ctr: &v1.SecurityContext{RunAsNonRoot: &yes}},
		{name: "image user by name", imageUser: "nobody", ctr: &v1.SecurityContext{RunAsNonRoot: &yes}, wantErr: "non-numeric user (nobody)"},
		{name: "runAsUser 1000 wins over a root image", ctr: &v1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: &user}},
		{name: "runAsUser 0", imageUser: "1000", ctr: &v1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: &root}, wantErr: "runAsUser breaks non-root policy"},
		{name: "from the pod", pod: &v1.SecurityContext{RunAsNonRoot: &yes}, wantErr: "image will run as root"},
		{name: "pod's runAsUser", pod: &v1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: &user}},
		{name: "container turns it off", pod: &v1.SecurityContext{RunAsNonRoot: &yes}, ctr: &v1.SecurityContext{RunAsNonRoot: &no}},
		{name: "pulled image user 0", imageUser: "0", pull: true, ctr: &v1.SecurityContext{RunAsNonRoot: &yes}, wantErr: "image will run as root"},
		{name: "pulled image user 1000", imageUser: "1000", pull: true, ctr: &v1.SecurityContext{RunAsNonRoot: &yes}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.rt.imageUsers["sha256:bb"] = tc.imageUser
			c := busybox("main")
			if tc.pull {
				c.ImagePullPolicy = v1.PullAlways
				h.rt.imageUsers["sha256:pulled-"+c.Image] = tc.imageUser
			}
			c.SecurityContext = tc.ctr
			pod := testPod("nonroot", v1.RestartPolicyAlways, c)
			if tc.pod != nil {
				pod.Spec.SecurityContext = &v1.PodSecurityContext{RunAsNonRoot: tc.pod.RunAsNonRoot, RunAsUser: tc.pod.RunAsUser}
			}
			h.run(pod)
			cs := containerState(t, h.settle(pod.UID), "main")
			if tc.wantErr == "" {
				if cs.State.Running == nil {
					t.Fatalf("want running, state %+v", cs.State)
				}
				if tc.pull && h.rt.count("PullImage") == 0 {
					t.Fatal("the image was not pulled")
				}
				return
			}
			if w := cs.State.Waiting; w == nil || w.Reason != "CreateContainerConfigError" || !strings.Contains(w.Message, tc.wantErr) ||
				!strings.Contains(w.Message, `pod: "default/nonroot", container: main`) {
				t.Fatalf("want CreateContainerConfigError with %q, state %+v", tc.wantErr, cs.State)
			}
			if n := h.rt.count("CreateContainer"); n != 0 {
				t.Errorf("%d containers created", n)
			}
		})
	}
}
