package volume

import (
	"context"
	"strings"
	"syscall"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestEmptyDirOnDiskIsWorldWritableDirectory(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	env := newTestEnv(t)
	pod := testPod(v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginEmptyDir, "scratch")
	if paths["scratch"] != dir {
		t.Fatalf("path = %q, want %q", paths["scratch"], dir)
	}
	if m := fileMode(t, dir); m != 0o777 {
		t.Fatalf("mode = %#o, want 0777", m)
	}
	if len(env.mounter.mounts) != 0 {
		t.Fatal("a disk emptyDir mounted a tmpfs")
	}
}

func TestEmptyDirMemoryIsTmpfsWithSizeLimit(t *testing.T) {
	env := newTestEnv(t)
	pod := testPod(
		v1.Volume{Name: "cache", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("64Mi"))}}},
		v1.Volume{Name: "unbounded", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}},
	)
	for range 2 { // the second sync finds the mounts and leaves them
		if _, err := env.m.SetUp(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	}
	if size, ok := env.mounter.size(env.volDir(pod, pluginEmptyDir, "cache")); !ok || size != 64<<20 {
		t.Fatalf("cache: mounted=%v size=%d, want a 64Mi tmpfs", ok, size)
	}
	if size, ok := env.mounter.size(env.volDir(pod, pluginEmptyDir, "unbounded")); !ok || size != 0 {
		t.Fatalf("unbounded: mounted=%v size=%d, want a tmpfs without limit", ok, size)
	}
	if env.mounter.calls != 2 {
		t.Fatalf("%d mount calls over two syncs, want 2", env.mounter.calls)
	}
}

func TestUnsupportedVolumesAreClearErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     v1.VolumeSource
		wantErr string
	}{
		{"hugepages emptyDir", v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumHugePages}}, `emptyDir medium "HugePages" is not supported`},
		{"a PVC", v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}, "volume type persistentVolumeClaim is not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			_, err := env.m.SetUp(context.Background(), testPod(v1.Volume{Name: "x", VolumeSource: tc.src}))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("SetUp error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
