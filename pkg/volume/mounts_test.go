package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMountsReadOnlyAndPropagation(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"app.conf": "conf"})
	hostDir := t.TempDir()
	pod := testPod(
		v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		v1.Volume{Name: "host", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: hostDir}}},
		cmVolume("cfg", v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}),
	)
	c := &pod.Spec.Containers[0]
	c.SecurityContext = &v1.SecurityContext{Privileged: ptr(true)}
	c.VolumeMounts = []v1.VolumeMount{
		{Name: "data", MountPath: "/data"},
		{Name: "data", MountPath: "/ro", ReadOnly: true},
		{Name: "host", MountPath: "/h2c", MountPropagation: ptr(v1.MountPropagationHostToContainer)},
		{Name: "host", MountPath: "/bidi", MountPropagation: ptr(v1.MountPropagationBidirectional)},
		{Name: "cfg", MountPath: "/etc/app"},
		{Name: "host", MountPath: "/rro", ReadOnly: true, RecursiveReadOnly: ptr(v1.RecursiveReadOnlyEnabled)},
	}
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.m.Mounts(pod, c, paths)
	if err != nil {
		t.Fatal(err)
	}
	want := []*runtimeapi.Mount{
		{ContainerPath: "/data", HostPath: paths["data"], Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
		{ContainerPath: "/ro", HostPath: paths["data"], Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
		{ContainerPath: "/h2c", HostPath: hostDir, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		{ContainerPath: "/bidi", HostPath: hostDir, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
		{ContainerPath: "/etc/app", HostPath: paths["cfg"], Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
		{ContainerPath: "/rro", HostPath: hostDir, Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mounts, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].String() != want[i].String() {
			t.Errorf("mount %d =\n %v\nwant\n %v", i, got[i], want[i])
		}
	}
}

func TestMountsSubPath(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"app.conf": "v1"})
	hostDir := t.TempDir()
	outside := t.TempDir()
	pod := testPod(
		v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		v1.Volume{Name: "host", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: hostDir}}},
		cmVolume("cfg", v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}),
	)
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	// A container planted symlinks in its emptyDir: one out of the volume, one within it.
	if err := os.Symlink(outside, filepath.Join(paths["data"], "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("./logs", filepath.Join(paths["data"], "alias")); err != nil {
		t.Fatal(err)
	}

	mountOf := func(vm v1.VolumeMount) (*runtimeapi.Mount, error) {
		c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{vm},
			Env: []v1.EnvVar{{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}, {Name: "SUB", Value: "x"}}}
		ms, err := env.m.Mounts(pod, c, paths)
		if err != nil {
			return nil, err
		}
		return ms[0], nil
	}

	// staged checks that m hands the runtime a staging path under the pod directory, never a
	// path inside the volume, and that the staging path is bound to want.
	staged := func(t *testing.T, m *runtimeapi.Mount, volume string, want string) {
		t.Helper()
		stage := filepath.Join(env.root, "pods", string(pod.UID), subPathsDirName, volume, "app", "0")
		if m.HostPath != stage {
			t.Fatalf("host path = %q, want the staging path %q", m.HostPath, stage)
		}
		if got := env.mounter.bound(stage); got != want {
			t.Fatalf("staging path bound to %q, want %q", got, want)
		}
	}
	realData, _ := filepath.EvalSymlinks(paths["data"])
	realHost, _ := filepath.EvalSymlinks(hostDir)

	t.Run("an emptyDir subPath is created with the volume's mode", func(t *testing.T) {
		m, err := mountOf(v1.VolumeMount{Name: "data", MountPath: "/logs", SubPath: "logs/app"})
		if err != nil {
			t.Fatal(err)
		}
		staged(t, m, "data", filepath.Join(realData, "logs/app"))
		for _, p := range []string{"logs", "logs/app"} {
			if mode := fileMode(t, filepath.Join(paths["data"], p)); mode != 0o777 {
				t.Fatalf("%s mode %#o, want the volume's 0777", p, mode)
			}
		}
	})
	t.Run("a hostPath subPath is created", func(t *testing.T) {
		m, err := mountOf(v1.VolumeMount{Name: "host", MountPath: "/x", SubPath: "made"})
		if err != nil {
			t.Fatal(err)
		}
		staged(t, m, "host", filepath.Join(realHost, "made"))
		if fi, err := os.Stat(filepath.Join(hostDir, "made")); err != nil || !fi.IsDir() {
			t.Fatalf("subPath not created: %v", err)
		}
	})
	t.Run("a symlink inside the volume resolves", func(t *testing.T) {
		m, err := mountOf(v1.VolumeMount{Name: "data", MountPath: "/a", SubPath: "alias/app"})
		if err != nil {
			t.Fatal(err)
		}
		staged(t, m, "data", filepath.Join(realData, "logs/app"))
	})
	t.Run("subPathExpr expands from env", func(t *testing.T) {
		m, err := mountOf(v1.VolumeMount{Name: "data", MountPath: "/e", SubPathExpr: "$(POD)/$(SUB)"})
		if err != nil {
			t.Fatal(err)
		}
		staged(t, m, "data", filepath.Join(realData, "web/x"))
	})
	t.Run("a configMap subPath is the current generation's file", func(t *testing.T) {
		m, err := mountOf(v1.VolumeMount{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"})
		if err != nil {
			t.Fatal(err)
		}
		gen, _ := os.Readlink(filepath.Join(paths["cfg"], dataDirName))
		realCfg, _ := filepath.EvalSymlinks(paths["cfg"])
		staged(t, m, "cfg", filepath.Join(realCfg, gen, "app.conf"))
		if !m.Readonly {
			t.Fatal("a configMap subPath mount must be read-only")
		}
		if fi, err := os.Lstat(m.HostPath); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("a file's staging path must be a file: %v, %v", fi, err)
		}
	})

	for _, tc := range []struct {
		name    string
		vm      v1.VolumeMount
		wantErr string
	}{
		{"an absolute subPath", v1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "/etc"}, `subPath "/etc" must be a relative path`},
		{"a .. subPath", v1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "a/../../.."}, `subPath "a/../../.." must not contain '..'`},
		{"a subPathExpr expanding to ..", v1.VolumeMount{Name: "data", MountPath: "/x", SubPathExpr: "..$(NONE)"}, `no env "NONE"`},
		{"a symlink out of the volume", v1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "evil/passwd"}, `subPath "evil/passwd" escapes the volume`},
		{"a missing configMap key", v1.VolumeMount{Name: "cfg", MountPath: "/x", SubPath: "nope"}, `subPath "nope" does not exist in the volume`},
		{"the configMap's ..data", v1.VolumeMount{Name: "cfg", MountPath: "/x", SubPath: "..data/../../x"}, `must not contain '..'`},
		{"an unknown volume", v1.VolumeMount{Name: "nope", MountPath: "/x"}, `volumeMounts[0] (volume "nope"): the pod has no volume of that name`},
		{"Bidirectional unprivileged", v1.VolumeMount{Name: "data", MountPath: "/x", MountPropagation: ptr(v1.MountPropagationBidirectional)}, "Bidirectional mount propagation is available only to privileged containers"},
		{"a bad propagation", v1.VolumeMount{Name: "data", MountPath: "/x", MountPropagation: ptr(v1.MountPropagationMode("Shared"))}, `mountPropagation "Shared" is not valid`},
		{"recursive read-only on a writable mount", v1.VolumeMount{Name: "data", MountPath: "/x", RecursiveReadOnly: ptr(v1.RecursiveReadOnlyEnabled)}, "needs readOnly: true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mountOf(tc.vm)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), `container "app": volumeMounts[0]`) {
				t.Fatalf("error = %v, want `container \"app\": volumeMounts[0] ...%s`", err, tc.wantErr)
			}
		})
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("something was created outside the volume: %v", entries)
	}
}

func TestMountsOfAVolumeNotSetUp(t *testing.T) {
	pod := testPod(v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/d"}}}
	if _, err := newTestEnv(t).m.Mounts(pod, c, nil); err == nil || !strings.Contains(err.Error(), "the volume is not set up") {
		t.Fatalf("error = %v", err)
	}
}
