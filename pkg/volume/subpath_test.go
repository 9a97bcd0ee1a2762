package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// The walks are what closes the race: whatever was resolved before, a component that is a
// symlink when it is opened fails the call instead of being followed.
func TestNoFollowWalksRefuseASymlinkOnThePath(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Chmod(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(outside, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"d", "d/sub"} {
		if fd, err := openBeneath(root, rel); !errors.Is(err, errSymlinkOnPath) && !errors.Is(err, unix.ENOTDIR) {
			closeFD(fd)
			t.Errorf("openBeneath(%q) = %v, want a refusal", rel, err)
		}
	}
	if err := mkdirBeneath(root, "d/new", 0o777); err == nil {
		t.Fatal("mkdirBeneath went through a symlink")
	}
	if err := mkdirBeneath(root, "d", 0o777); err == nil {
		t.Fatal("mkdirBeneath accepted a symlink as a directory")
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the symlink's target was chmod-ed: %v %v", fi.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "new")); !os.IsNotExist(err) {
		t.Fatalf("something was created outside the root: %v", err)
	}
}

func TestMkdirBeneathCreatesWithTheModeWhateverTheUmask(t *testing.T) {
	root := t.TempDir()
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	if err := mkdirBeneath(root, "a/b/c", 0o775); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "a/b", "a/b/c"} {
		if mode := fileMode(t, filepath.Join(root, p)); mode != 0o775 {
			t.Fatalf("%s mode %#o, want 0775", p, mode)
		}
	}
	if err := mkdirBeneath(root, "a/b/c", 0o775); err != nil {
		t.Fatalf("second call: %v", err)
	}
}

func TestStagedSubPathsAreRemountedAndReleasedAtTearDown(t *testing.T) {
	env := newTestEnv(t)
	pod := testPod(v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{
		{Name: "data", MountPath: "/a", SubPath: "a"},
		{Name: "data", MountPath: "/b", SubPath: "b"},
	}}
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	first, err := env.m.Mounts(pod, c, paths)
	if err != nil {
		t.Fatal(err)
	}
	// The container restarts after swapping "a" for a file: the staging path follows.
	if err := os.Remove(filepath.Join(paths["data"], "a")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(paths["data"], "a"), "now a file")
	again, err := env.m.Mounts(pod, c, paths)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].HostPath != first[0].HostPath {
		t.Fatalf("staging path moved: %q then %q", first[0].HostPath, again[0].HostPath)
	}
	if fi, err := os.Lstat(again[0].HostPath); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("staging path of a file is %v, %v", fi, err)
	}
	if len(env.mounter.binds) != 2 {
		t.Fatalf("%d binds, want 2 (one per mount, re-bound not stacked): %v", len(env.mounter.binds), env.mounter.binds)
	}
	if err := env.m.TearDown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if len(env.mounter.binds) != 0 {
		t.Fatalf("still bound after TearDown: %v", env.mounter.binds)
	}
}

func TestTearDownLeavesAStagedSubPathItCannotUnmount(t *testing.T) {
	env := newTestEnv(t)
	hostDir := t.TempDir()
	mustWrite(t, filepath.Join(hostDir, "sub/keep"), "host data")
	pod := testPod(v1.Volume{Name: "host", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: hostDir}}})
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{{Name: "host", MountPath: "/h", SubPath: "sub"}}}
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := env.m.Mounts(pod, c, paths)
	if err != nil {
		t.Fatal(err)
	}
	// What a real bind mount would show: the host directory's content at the staging path.
	mustWrite(t, filepath.Join(ms[0].HostPath, "keep"), "seen through the mount")
	env.mounter.unmountErr = errors.New("device or resource busy")
	if err := env.m.TearDown(pod.UID); err == nil {
		t.Fatal("TearDown succeeded with a subPath still mounted")
	}
	if _, err := os.Stat(filepath.Join(ms[0].HostPath, "keep")); err != nil {
		t.Fatalf("TearDown removed what a still-mounted subPath shows: %v", err)
	}
}
