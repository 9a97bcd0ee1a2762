package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	v1 "k8s.io/api/core/v1"
)

// changeDeadline is how soon a change in the directory must reach update: the promise made
// to users, with the default debounce.
const changeDeadline = time.Second

// recorder is the update callback of a running source, as a test sees it.
type recorder struct {
	t     *testing.T
	calls chan []*v1.Pod
	hook  *logtest.Hook
}

// startFileSource runs a file source on dir until the test ends.
func startFileSource(t *testing.T, dir string, tune func(*FileSource)) *recorder {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	src, err := NewFileSource(FileSourceConfig{Dir: dir, NodeName: testNode, Log: logrus.NewEntry(logger)})
	if err != nil {
		t.Fatalf("NewFileSource: %v", err)
	}
	// Events, not the safety net, must deliver every change in these tests.
	src.resync = time.Hour
	if tune != nil {
		tune(src)
	}
	r := &recorder{t: t, calls: make(chan []*v1.Pod, 100), hook: hook}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var inUpdate sync.Mutex
	go func() {
		defer wg.Done()
		err := src.Run(ctx, func(pods []*v1.Pod) {
			if !inUpdate.TryLock() {
				t.Error("update called concurrently")
				return
			}
			defer inUpdate.Unlock()
			r.calls <- pods
		})
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return r
}

// next returns the next update's pods, failing the test if none comes in time.
func (r *recorder) next() []*v1.Pod {
	r.t.Helper()
	select {
	case pods := <-r.calls:
		return pods
	case <-time.After(changeDeadline):
		r.t.Fatalf("no update within %v", changeDeadline)
		return nil
	}
}

// waitUntil returns the first update for which ok holds, failing the test if none comes
// within changeDeadline. Updates in between (an editor's intermediate states) are skipped.
func (r *recorder) waitUntil(what string, ok func(pods []*v1.Pod) bool) []*v1.Pod {
	r.t.Helper()
	deadline := time.After(changeDeadline)
	var last []string
	for {
		select {
		case pods := <-r.calls:
			if ok(pods) {
				return pods
			}
			last = podNames(pods)
		case <-deadline:
			r.t.Fatalf("no update with %s within %v; last update had %q", what, changeDeadline, last)
			return nil
		}
	}
}

// waitFor returns the first update whose pod names equal want (namespace/name, in order).
func (r *recorder) waitFor(want ...string) []*v1.Pod {
	r.t.Helper()
	return r.waitUntil(fmt.Sprintf("pods %q", want), func(pods []*v1.Pod) bool {
		return slices.Equal(podNames(pods), want)
	})
}

// location is where a pod was defined, per its annotation.
func location(p *v1.Pod) string { return p.Annotations[AnnotationManifestFile] }

// logsAbout returns the logged entries whose "file" field is file.
func (r *recorder) logsAbout(file string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range r.hook.AllEntries() {
		if e.Data["file"] == file {
			out = append(out, e)
		}
	}
	return out
}

func writeFile(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileSourceFollowsAddEditRenameDelete(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := startFileSource(t, dir, nil)
	r.waitFor() // the initial, empty set

	writeFile(t, dir, "a.yaml", podYAML("a"))
	pods := r.waitFor("default/a-node-1")
	uidA := pods[0].UID
	seenA := pods[0].Annotations[AnnotationConfigSeen]

	writeFile(t, dir, "b.yaml", podYAML("b1")+"---\n"+podYAML("b2"))
	pods = r.waitFor("default/a-node-1", "default/b1-node-1", "default/b2-node-1")
	if pods[0].UID != uidA || pods[0].Annotations[AnnotationConfigSeen] != seenA {
		t.Errorf("unchanged pod a changed identity: UID %s -> %s, seen %s -> %s",
			uidA, pods[0].UID, seenA, pods[0].Annotations[AnnotationConfigSeen])
	}
	uidB2 := pods[2].UID

	// An edit replaces the pod: same name, new UID.
	writeFile(t, dir, "a.yaml", strings.Replace(podYAML("a"), "busybox:1.36", "busybox:1.37", 1))
	r.waitUntil("pod a edited", func(pods []*v1.Pod) bool {
		return len(pods) == 3 && pods[0].Name == "a-node-1" && pods[0].UID != uidA &&
			pods[0].Spec.Containers[0].Image == "busybox:1.37"
	})

	// A rename keeps the pods (same UIDs) and tells where they now live.
	if err := os.Rename(filepath.Join(dir, "b.yaml"), filepath.Join(dir, "c.yml")); err != nil {
		t.Fatal(err)
	}
	pods = r.waitUntil("b.yaml's pods in c.yml", func(pods []*v1.Pod) bool {
		return len(pods) == 3 && location(pods[1]) == "c.yml#0" && location(pods[2]) == "c.yml#1"
	})
	if pods[2].UID != uidB2 {
		t.Errorf("rename changed the UID of b2: %s -> %s", uidB2, pods[2].UID)
	}

	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	r.waitFor("default/b1-node-1", "default/b2-node-1")

	changed := 0
	for _, e := range r.hook.AllEntries() {
		if e.Message == "manifest pods changed" {
			changed++
		}
	}
	if changed == 0 {
		t.Error(`no "manifest pods changed" log`)
	}
}

func TestFileSourceBadFileBesideGoodOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	goodYAML := podYAML("good") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: good}\n"
	writeFile(t, dir, "good.yaml", goodYAML)
	writeFile(t, dir, "bad.yaml", `apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  containers:
  - name: app
    image: busybox
    imagee: busybox
`)
	r := startFileSource(t, dir, nil)
	r.waitFor("default/good-node-1")

	// A file that does not parse is reported once it has settled (it might be half-written).
	var entries []*logrus.Entry
	deadline := time.Now().Add(settleTime + changeDeadline)
	for entries = r.logsAbout("bad.yaml"); len(entries) == 0 && time.Now().Before(deadline); entries = r.logsAbout("bad.yaml") {
		time.Sleep(10 * time.Millisecond)
	}
	if len(entries) != 1 {
		t.Fatalf("got %d log entries about bad.yaml, want 1: %v", len(entries), entries)
	}
	e := entries[0]
	if e.Level != logrus.ErrorLevel || e.Data["document"] != 0 ||
		!strings.Contains(e.Data[logrus.ErrorKey].(error).Error(), "spec.containers[0].imagee: unknown field") {
		t.Errorf("log entry about bad.yaml = %s %q %v", e.Level, e.Message, e.Data)
	}

	// The Service beside the good pod is skipped with a warning.
	entries = r.logsAbout("good.yaml")
	if len(entries) != 1 || entries[0].Level != logrus.WarnLevel || entries[0].Data["kind"] != "Service" ||
		entries[0].Data["document"] != 1 {
		t.Errorf("log entries about good.yaml = %v, want one warning about the Service", entries)
	}

	// Rescans do not repeat the reports: touch both files, then make a real change and wait
	// for it, which proves the touches were processed.
	writeFile(t, dir, "good.yaml", goodYAML)
	if err := os.Chmod(filepath.Join(dir, "bad.yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "more.yaml", podYAML("more"))
	r.waitFor("default/good-node-1", "default/more-node-1")
	for _, file := range []string{"bad.yaml", "good.yaml"} {
		if n := len(r.logsAbout(file)); n != 1 {
			t.Errorf("%s was reported %d times, want once", file, n)
		}
	}

	// Fixing the bad file brings its pod in.
	writeFile(t, dir, "bad.yaml", podYAML("bad"))
	r.waitFor("default/bad-node-1", "default/good-node-1", "default/more-node-1")
}

func TestFileSourceIgnoresOtherFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := startFileSource(t, dir, nil)
	r.waitFor()

	for _, name := range []string{".hidden.yaml", "web.yaml~", ".web.yaml.swp", "notes.txt", "web.yaml.tmp"} {
		writeFile(t, dir, name, podYAML("ignored"))
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "sub.yaml/inner.yaml", podYAML("inner"))
	writeFile(t, dir, "web.yaml", podYAML("web"))

	// The first update after the initial one is the real manifest alone: the other files
	// neither produced pods nor a no-op update.
	if got := podNames(r.next()); !slices.Equal(got, []string{"default/web-node-1"}) {
		t.Errorf("pods = %q, want only web", got)
	}
}

func TestFileSourceDuplicateAcrossFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", podYAML("web"))
	writeFile(t, dir, "b.yaml", strings.Replace(podYAML("web"), "busybox:1.36", "busybox:1.37", 1))
	r := startFileSource(t, dir, nil)
	pods := r.waitFor("default/web-node-1")
	if got := location(pods[0]); got != "a.yaml#0" {
		t.Errorf("kept the pod from %s, want a.yaml#0", got)
	}
	entries := r.logsAbout("b.yaml")
	if len(entries) != 1 || entries[0].Data["definedBy"] != "a.yaml#0" {
		t.Fatalf("log entries about b.yaml = %v, want one naming a.yaml#0", entries)
	}
	wantErr := `metadata.name: Duplicate value: "web": pod default/web-node-1 is already defined by a.yaml#0`
	if got := entries[0].Data[logrus.ErrorKey].(error).Error(); got != wantErr {
		t.Errorf("error = %q, want %q", got, wantErr)
	}

	// Once a.yaml is gone, b.yaml's pod takes its place.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	r.waitUntil("the pod from b.yaml", func(pods []*v1.Pod) bool {
		return len(pods) == 1 && location(pods[0]) == "b.yaml#0"
	})
}

func TestFileSourceDanglingSymlinkDropsItsPods(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "web-pod")
	if err := os.WriteFile(target, []byte(podYAML("web")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	r := startFileSource(t, dir, nil)
	r.waitFor("default/web-node-1")

	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	// The target is outside the directory, so no event tells; any event in the directory
	// (or the resync) makes the source look again.
	writeFile(t, dir, "other.yaml", podYAML("other"))
	r.waitFor("default/other-node-1")
	entries := r.logsAbout("web.yaml")
	if len(entries) != 1 || entries[0].Message != "cannot read manifest file; its pods are removed" {
		t.Errorf("log entries about web.yaml = %v", entries)
	}
}

func TestFileSourceDirectoryAppearsLater(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "manifests")
	r := startFileSource(t, dir, func(s *FileSource) { s.dirPoll = 20 * time.Millisecond })
	r.waitFor()

	missing := 0
	for _, e := range r.hook.AllEntries() {
		if strings.Contains(e.Message, "does not exist") {
			missing++
		}
	}
	if missing != 1 {
		t.Errorf("missing directory logged %d times, want once", missing)
	}

	// Write into a sibling and rename it into place, so the directory appears with its file.
	staging := dir + ".new"
	if err := os.Mkdir(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, staging, "web.yaml", podYAML("web"))
	if err := os.Rename(staging, dir); err != nil {
		t.Fatal(err)
	}
	r.waitFor("default/web-node-1")

	// Once watched, changes arrive by events.
	writeFile(t, dir, "db.yaml", podYAML("db"))
	r.waitFor("default/db-node-1", "default/web-node-1")

	// A deleted directory is an empty set, and it is followed again when it comes back.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r.waitFor()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "web.yaml", podYAML("web"))
	r.waitFor("default/web-node-1")
}

func TestSyncOnceUpdatesOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	logger, _ := logtest.NewNullLogger()
	src, err := NewFileSource(FileSourceConfig{Dir: dir, NodeName: testNode, Log: logrus.NewEntry(logger)})
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]*v1.Pod
	run := &fileRun{
		src:    src,
		sc:     newScanner(dir, testNode, src.log, time.Now),
		update: func(pods []*v1.Pod) { calls = append(calls, pods) },
	}

	steps := []struct {
		name      string
		change    func()
		wantCalls int
	}{
		{"the first pass always updates, even when empty", func() {}, 1},
		{"nothing changed", func() {}, 1},
		{"a pod added", func() { writeFile(t, dir, "web.yaml", podYAML("web")) }, 2},
		{"same content written again", func() { writeFile(t, dir, "web.yaml", podYAML("web")) }, 2},
		{"a non-Pod document added beside it", func() {
			writeFile(t, dir, "web.yaml", podYAML("web")+"---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
		}, 2},
		{"a bad file added", func() { writeFile(t, dir, "bad.yaml", "kind: Pod\n") }, 2},
		{"the pod edited", func() { writeFile(t, dir, "web.yaml", podYAML("web2")) }, 3},
	}
	for _, s := range steps {
		s.change()
		run.syncOnce()
		if len(calls) != s.wantCalls {
			t.Fatalf("%s: %d update calls, want %d", s.name, len(calls), s.wantCalls)
		}
	}

	// Every call hands out fresh objects.
	run.sc.firstSeen = nil // force a difference on the next pass
	run.last = nil
	run.syncOnce()
	if len(calls) != 4 || calls[2][0] == calls[3][0] {
		t.Error("two update calls share pod objects")
	}
}

func TestNewFileSourceChecksConfig(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	tests := []struct {
		name string
		cfg  FileSourceConfig
	}{
		{"no dir", FileSourceConfig{NodeName: testNode, Log: log}},
		{"no node name", FileSourceConfig{Dir: "m", Log: log}},
		{"invalid node name", FileSourceConfig{Dir: "m", NodeName: "Node_1", Log: log}},
		{"no log", FileSourceConfig{Dir: "m", NodeName: testNode}},
		{"negative debounce", FileSourceConfig{Dir: "m", NodeName: testNode, Log: log, Debounce: -1}},
		{"negative size limit", FileSourceConfig{Dir: "m", NodeName: testNode, Log: log, MaxFileBytes: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFileSource(tc.cfg); err == nil {
				t.Error("NewFileSource accepted an invalid config")
			}
		})
	}
	src, err := NewFileSource(FileSourceConfig{Dir: "m/", NodeName: testNode, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if src.debounce != DefaultDebounce || src.resync != DefaultResync || src.dir != "m" || src.maxBytes != DefaultMaxFileBytes {
		t.Errorf("defaults: debounce %v, resync %v, dir %q, size limit %d", src.debounce, src.resync, src.dir, src.maxBytes)
	}
}

func TestHalfWrittenFileKeepsItsPodsUntilItSettles(t *testing.T) {
	dir := t.TempDir()
	logger, hook := logtest.NewNullLogger()
	sc := newScanner(dir, testNode, logrus.NewEntry(logger), time.Now)
	writeFile(t, dir, "web.yaml", podYAML("web"))
	if pods := sc.scan(); len(pods) != 1 {
		t.Fatalf("scan found %d pods", len(pods))
	}

	// An editor saving in place, caught in the middle: the file does not parse.
	full := podYAML("web")
	writeFile(t, dir, "web.yaml", full[:len(full)/2]+"\n  containers: [")
	pods := sc.scan()
	if len(pods) != 1 || pods[0].Name != "web-"+testNode {
		t.Fatalf("a half-written file dropped its pod: %v", podNames(pods))
	}
	if sc.recheck <= 0 || sc.recheck > settleTime {
		t.Fatalf("recheck = %v, want a rescan within %v", sc.recheck, settleTime)
	}
	if len(hook.AllEntries()) != 0 {
		t.Fatalf("a file being written was reported: %v", hook.AllEntries())
	}

	// Still broken once settled: the error is real, reported, and the pod goes.
	old := time.Now().Add(-2 * settleTime)
	if err := os.Chtimes(filepath.Join(dir, "web.yaml"), old, old); err != nil {
		t.Fatal(err)
	}
	if pods := sc.scan(); len(pods) != 0 || sc.recheck != 0 {
		t.Fatalf("settled broken file: pods %v, recheck %v", podNames(pods), sc.recheck)
	}
	if n := len(hook.AllEntries()); n != 1 {
		t.Fatalf("%d log entries about the settled broken file, want 1", n)
	}
}

func TestTruncatedFileKeepsItsPodsAndWarningsUntilItSettles(t *testing.T) {
	dir := t.TempDir()
	logger, hook := logtest.NewNullLogger()
	sc := newScanner(dir, testNode, logrus.NewEntry(logger), time.Now)
	content := podYAML("web") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
	writeFile(t, dir, "web.yaml", content)
	if pods := sc.scan(); len(pods) != 1 || len(hook.AllEntries()) != 1 {
		t.Fatalf("first scan: %d pods, logs %v", len(pods), hook.AllEntries())
	}

	// An in-place rewrite caught between truncate and write: the pod stays, nothing is logged,
	// and the same content written back is not reported again.
	writeFile(t, dir, "web.yaml", "")
	if pods := sc.scan(); len(pods) != 1 || sc.recheck <= 0 {
		t.Fatalf("a truncated file dropped its pod: %v (recheck %v)", podNames(pods), sc.recheck)
	}
	writeFile(t, dir, "web.yaml", content)
	if pods := sc.scan(); len(pods) != 1 || len(hook.AllEntries()) != 1 {
		t.Fatalf("rewritten file: %d pods, logs %v", len(pods), hook.AllEntries())
	}

	// Emptied for good: once settled its pod goes.
	writeFile(t, dir, "web.yaml", "")
	old := time.Now().Add(-2 * settleTime)
	if err := os.Chtimes(filepath.Join(dir, "web.yaml"), old, old); err != nil {
		t.Fatal(err)
	}
	if pods := sc.scan(); len(pods) != 0 {
		t.Fatalf("a settled empty file kept its pods: %v", podNames(pods))
	}
}
