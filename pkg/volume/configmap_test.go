package volume

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
)

func cmVolume(name string, src v1.ConfigMapVolumeSource) v1.Volume {
	return v1.Volume{Name: name, VolumeSource: v1.VolumeSource{ConfigMap: &src}}
}

func TestConfigMapVolumeFilesModesItemsOptional(t *testing.T) {
	ref := func(n string) v1.LocalObjectReference { return v1.LocalObjectReference{Name: n} }
	tests := []struct {
		name      string
		src       v1.ConfigMapVolumeSource
		want      map[string]string
		wantModes map[string]os.FileMode
		wantErr   string
	}{
		{
			name:      "all keys with the default mode",
			src:       v1.ConfigMapVolumeSource{LocalObjectReference: ref("cfg")},
			want:      map[string]string{"a.conf": "A", "b.conf": "B"},
			wantModes: map[string]os.FileMode{"a.conf": 0o644, "b.conf": 0o644},
		},
		{
			name:      "defaultMode applies to every key",
			src:       v1.ConfigMapVolumeSource{LocalObjectReference: ref("cfg"), DefaultMode: ptr[int32](0o400)},
			want:      map[string]string{"a.conf": "A", "b.conf": "B"},
			wantModes: map[string]os.FileMode{"a.conf": 0o400, "b.conf": 0o400},
		},
		{
			name: "items pick keys, paths may nest, item mode wins",
			src: v1.ConfigMapVolumeSource{LocalObjectReference: ref("cfg"), DefaultMode: ptr[int32](0o440), Items: []v1.KeyToPath{
				{Key: "a.conf", Path: "etc/app/a.conf", Mode: ptr[int32](0o600)},
				{Key: "b.conf", Path: "b"},
			}},
			want:      map[string]string{"etc/app/a.conf": "A", "b": "B"},
			wantModes: map[string]os.FileMode{"etc/app/a.conf": 0o600, "b": 0o440},
		},
		{
			name:    "an item naming a missing key is an error",
			src:     v1.ConfigMapVolumeSource{LocalObjectReference: ref("cfg"), Items: []v1.KeyToPath{{Key: "nope", Path: "x"}}},
			wantErr: `volume "v": items[0]: configmap "cfg" has no key "nope"`,
		},
		{
			name: "an item naming a missing key is skipped when optional",
			src: v1.ConfigMapVolumeSource{LocalObjectReference: ref("cfg"), Optional: ptr(true), Items: []v1.KeyToPath{
				{Key: "nope", Path: "x"}, {Key: "a.conf", Path: "a"},
			}},
			want: map[string]string{"a": "A"},
		},
		{
			name: "an optional missing configmap is an empty volume",
			src:  v1.ConfigMapVolumeSource{LocalObjectReference: ref("absent"), Optional: ptr(true)},
			want: map[string]string{},
		},
		{
			name:    "a mode above 0777 is an error",
			src:     v1.ConfigMapVolumeSource{LocalObjectReference: ref("cfg"), DefaultMode: ptr[int32](0o4755)},
			wantErr: "mode 04755 is not between 0 and 0777",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.source.setConfigMap("default", "cfg", map[string]string{"a.conf": "A", "b.conf": "B"})
			pod := testPod(cmVolume("v", tc.src))
			paths, err := env.m.SetUp(context.Background(), pod)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("SetUp error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dir := env.volDir(pod, pluginConfigMap, "v")
			if paths["v"] != dir {
				t.Fatalf("path = %q, want %q", paths["v"], dir)
			}
			if got := readVolume(t, dir); !maps.Equal(got, tc.want) {
				t.Fatalf("files = %v, want %v", got, tc.want)
			}
			for p, mode := range tc.wantModes {
				if got := fileMode(t, filepath.Join(dir, p)); got != mode {
					t.Errorf("mode of %s = %#o, want %#o", p, got, mode)
				}
			}
			if n := len(env.mounter.mounts); n != 0 {
				t.Errorf("a configMap volume mounted %d tmpfs, want it on disk", n)
			}
		})
	}
}

func TestMissingConfigMapIsNotFoundWithTheKubeletMessage(t *testing.T) {
	env := newTestEnv(t)
	pod := testPod(cmVolume("config", v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "app-config"}}))
	_, err := env.m.SetUp(context.Background(), pod)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("SetUp error = %v, want NotFound", err)
	}
	if want := `volume "config": configmap "app-config" not found`; err.Error() != want {
		t.Fatalf("message = %q, want %q", err.Error(), want)
	}
	// Once it exists, the same pod sets up.
	env.source.setConfigMap("default", "app-config", map[string]string{"k": "v"})
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
}

func TestConfigMapBinaryDataAndUpdatesReachTheVolume(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"a": "1", "gone": "x"})
	env.source.configMaps["default/cfg"].BinaryData = map[string][]byte{"bin": {0, 1, 2}}
	pod := testPod(cmVolume("v", v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}))
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginConfigMap, "v")
	if got := readVolume(t, dir); !maps.Equal(got, map[string]string{"a": "1", "gone": "x", "bin": "\x00\x01\x02"}) {
		t.Fatalf("files = %q", got)
	}
	env.source.setConfigMap("default", "cfg", map[string]string{"a": "2", "new": "n"})
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if got := readVolume(t, dir); !maps.Equal(got, map[string]string{"a": "2", "new": "n"}) {
		t.Fatalf("after update files = %q, want stale keys removed", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
		t.Fatalf("stale entry still there: %v", err)
	}
}
