package volume

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func everyKindPod(hostDir string) *v1.Pod {
	return testPod(
		v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		v1.Volume{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}},
		v1.Volume{Name: "host", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: hostDir}}},
		cmVolume("cfg", v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}),
		secretVolume("sec", v1.SecretVolumeSource{SecretName: "sec"}),
	)
}

func TestTearDownRemovesEverythingAndIsIdempotent(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"k": "v"})
	env.source.setSecret("default", "sec", map[string]string{"k": "v"})
	hostDir := t.TempDir()
	mustWrite(t, filepath.Join(hostDir, "keep"), "host data")
	pod := everyKindPod(hostDir)
	paths, err := env.m.SetUp(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	// A container left a symlink to the host directory inside its emptyDir.
	if err := os.Symlink(hostDir, filepath.Join(paths["scratch"], "escape")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(paths["scratch"], "deep/file"), "x")
	if len(env.mounter.mounts) != 2 {
		t.Fatalf("%d tmpfs mounted, want 2 (memory emptyDir, secret)", len(env.mounter.mounts))
	}

	for i := range 2 {
		if err := env.m.TearDown(pod.UID); err != nil {
			t.Fatalf("TearDown #%d: %v", i+1, err)
		}
	}
	if len(env.mounter.mounts) != 0 {
		t.Fatalf("still mounted: %v", env.mounter.mounts)
	}
	if _, err := os.Lstat(filepath.Join(env.root, "pods", string(pod.UID))); !os.IsNotExist(err) {
		t.Fatalf("pod directory still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(hostDir, "keep")); err != nil || string(b) != "host data" {
		t.Fatalf("hostPath content touched: %q, %v", b, err)
	}
}

func TestTearDownAfterRestartWorksFromDisk(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"k": "v"})
	env.source.setSecret("default", "sec", map[string]string{"k": "v"})
	pod := everyKindPod(t.TempDir())
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	other := pod.DeepCopy()
	other.UID = "uid-2"
	if _, err := env.m.SetUp(context.Background(), other); err != nil {
		t.Fatal(err)
	}

	restarted := env.newManager(t)
	uids, err := restarted.PodsOnDisk()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(uids)
	if !slices.Equal(uids, []types.UID{"uid-1", "uid-2"}) {
		t.Fatalf("PodsOnDisk = %v", uids)
	}
	for _, uid := range uids {
		if err := restarted.TearDown(uid); err != nil {
			t.Fatal(err)
		}
	}
	if uids, _ := restarted.PodsOnDisk(); len(uids) != 0 {
		t.Fatalf("PodsOnDisk after teardown = %v", uids)
	}
	if len(env.mounter.mounts) != 0 {
		t.Fatalf("still mounted: %v", env.mounter.mounts)
	}
}

func TestTearDownOfUnknownPodAndBadUID(t *testing.T) {
	env := newTestEnv(t)
	if err := env.m.TearDown("never-seen"); err != nil {
		t.Fatalf("TearDown of a pod with no directory: %v", err)
	}
	if uids, err := env.m.PodsOnDisk(); err != nil || len(uids) != 0 {
		t.Fatalf("PodsOnDisk on an empty root = %v, %v", uids, err)
	}
	for _, uid := range []types.UID{"", "..", "a/../../b"} {
		if err := env.m.TearDown(uid); err == nil {
			t.Errorf("TearDown(%q) accepted", uid)
		}
	}
}
