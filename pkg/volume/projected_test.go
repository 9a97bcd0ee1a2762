package volume

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
)

func TestProjectedVolumeCombinesSources(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"app.conf": "conf"})
	env.source.setSecret("default", "tls", map[string]string{"tls.crt": "CRT", "tls.key": "KEY"})
	pod := testPod(v1.Volume{Name: "all", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
		DefaultMode: ptr[int32](0o440),
		Sources: []v1.VolumeProjection{
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}},
			{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "tls"}, Items: []v1.KeyToPath{
				{Key: "tls.key", Path: "tls/key", Mode: ptr[int32](0o400)},
			}}},
			{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{
				{Path: "podname", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			}}},
		},
	}}})
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginProjected, "all")
	if _, ok := env.mounter.size(dir); !ok {
		t.Fatal("a projected volume with a secret is not on tmpfs")
	}
	want := map[string]string{"app.conf": "conf", "tls/key": "KEY", "podname": "web"}
	if got := readVolume(t, dir); !maps.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	if m := fileMode(t, dir+"/app.conf"); m != 0o440 {
		t.Errorf("app.conf mode = %#o, want 0440", m)
	}
	if m := fileMode(t, dir+"/tls/key"); m != 0o400 {
		t.Errorf("tls/key mode = %#o, want 0400", m)
	}
}

func TestProjectedVolumeWithoutSecretIsOnDisk(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"k": "v"})
	pod := testPod(v1.Volume{Name: "p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
		{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}},
	}}}})
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.mounter.size(env.volDir(pod, pluginProjected, "p")); ok {
		t.Fatal("configMap-only projected volume mounted a tmpfs")
	}
}

func TestProjectedVolumeErrors(t *testing.T) {
	tests := []struct {
		name     string
		sources  []v1.VolumeProjection
		wantErr  string
		notFound bool
	}{
		{"serviceAccountToken without a control plane",
			[]v1.VolumeProjection{{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token"}}},
			"serviceAccountToken needs a control plane (--kubeconfig)", false},
		{"a missing non-optional secret",
			[]v1.VolumeProjection{{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "db"}}}},
			`secret "db" not found`, true},
		{"two sources writing one path",
			[]v1.VolumeProjection{
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}}},
			}, `path "x": used by more than one item`, false},
		{"a file and a directory on one path",
			[]v1.VolumeProjection{
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x/y", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}}},
			}, `paths "x" and "x/y" conflict`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			pod := testPod(v1.Volume{Name: "p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: tc.sources}}})
			_, err := env.m.SetUp(context.Background(), pod)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), `volume "p": `) {
				t.Fatalf("SetUp error = %v, want `volume \"p\": ...%s`", err, tc.wantErr)
			}
			if errdefs.IsNotFound(err) != tc.notFound {
				t.Fatalf("IsNotFound = %v, want %v", !tc.notFound, tc.notFound)
			}
		})
	}
}
