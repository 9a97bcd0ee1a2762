package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestHostMounterTmpfs mounts a real 1 MiB tmpfs for a memory emptyDir and tears it down.
func TestHostMounterTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs")
	}
	env := newTestEnv(t)
	env.m.mounter = HostMounter()
	pod := testPod(v1.Volume{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{
		Medium: v1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi")),
	}}})
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	dir := paths["mem"]
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })

	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("filesystem type %#x, want tmpfs", st.Type)
	}
	if size := int64(st.Blocks) * int64(st.Bsize); size != 1<<20 {
		t.Fatalf("tmpfs size %d, want 1 MiB", size)
	}
	if mounted, err := HostMounter().IsMountPoint(dir); err != nil || !mounted {
		t.Fatalf("IsMountPoint = %v, %v", mounted, err)
	}
	// A second sync finds the mount and does not stack another.
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	// TearDown by a new Manager (an agent restart) with a Mounter that knows nothing of the
	// mount first: it must refuse to empty the tmpfs, not delete through it.
	blind := env.newManager(t)
	if err := blind.TearDown(pod.UID); err == nil {
		t.Fatal("TearDown removed a directory with a filesystem mounted on it")
	}
	restarted := env.newManager(t)
	restarted.mounter = HostMounter()
	if err := restarted.TearDown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if mounted, err := HostMounter().IsMountPoint(dir); err != nil || mounted {
		t.Fatalf("after TearDown IsMountPoint = %v, %v", mounted, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("volume directory still there: %v", err)
	}
	if err := HostMounter().Unmount(dir); err != nil {
		t.Fatalf("Unmount of a path not mounted: %v", err)
	}
}

// TestHostMounterBindsTheCheckedSubPath stages a real subPath bind mount: once staged, a
// container swapping the directory for a symlink to the host changes nothing the runtime will
// mount, and TearDown unmounts it before removing anything.
func TestHostMounterBindsTheCheckedSubPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount")
	}
	env := newTestEnv(t)
	env.m.mounter = HostMounter()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "host-secret"), "host")
	pod := testPod(v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/d", SubPath: "d"}}}
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := env.m.Mounts(pod, c, paths)
	if err != nil {
		t.Fatal(err)
	}
	stage := ms[0].HostPath
	t.Cleanup(func() { unix.Unmount(stage, unix.MNT_DETACH) })
	mustWrite(t, filepath.Join(paths["data"], "d", "mine"), "volume")

	// The race the sidecar runs: d becomes a symlink to the host.
	if err := os.Rename(filepath.Join(paths["data"], "d"), filepath.Join(paths["data"], "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(paths["data"], "d")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(stage, "mine")); err != nil {
		t.Fatalf("the staged mount lost the checked directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stage, "host-secret")); err == nil {
		t.Fatal("the staged mount shows the host directory")
	}
	// A new container now is refused: the symlink leaves the volume.
	if _, err := env.m.Mounts(pod, c, paths); err == nil || !strings.Contains(err.Error(), "escapes the volume") {
		t.Fatalf("mounting a subPath that became a symlink out: %v", err)
	}

	if err := env.m.TearDown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if mounted, _ := HostMounter().IsMountPoint(stage); mounted {
		t.Fatal("staging path still mounted after TearDown")
	}
	if _, err := os.Stat(filepath.Join(outside, "host-secret")); err != nil {
		t.Fatalf("TearDown touched the host directory: %v", err)
	}
}
