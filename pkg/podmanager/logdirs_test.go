package podmanager

import (
	"os"
	"path/filepath"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestLogDirsOfGonePodsAreRemovedOnlyAfterSourcesReported(t *testing.T) {
	h := newHarness(t)
	logs := h.m.cfg.PodLogsDir
	live := testPod("live", v1.RestartPolicyAlways, busybox("main"))
	for _, name := range []string{
		"default_gone_uid-gone",            // a pod no source has any more
		"default_live_" + string(live.UID), // a pod that runs
		"not-a-pod-dir",                    // someone else's: left alone
	} {
		if err := os.MkdirAll(filepath.Join(logs, name, "main"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.m.removeOrphanLogDirs()
	if _, err := os.Stat(filepath.Join(logs, "default_gone_uid-gone")); err != nil {
		t.Fatal("a log directory was removed before the sources reported")
	}
	h.run(live)
	h.m.removeOrphanLogDirs()
	entries, _ := os.ReadDir(logs)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if len(left) != 2 || left[0] != "default_live_uid-live" || left[1] != "not-a-pod-dir" {
		t.Fatalf("left %v, want the live pod's and the foreign directory", left)
	}
}
