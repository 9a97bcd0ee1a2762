package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// TestAtomicUpdateNeverShowsPartialContent rewrites a configMap volume 100 times while readers
// open every key in a tight loop; each read must be one whole version of the file.
func TestAtomicUpdateNeverShowsPartialContent(t *testing.T) {
	env := newTestEnv(t)
	keys := []string{"a", "b", "c"}
	content := func(version int) map[string]string {
		data := map[string]string{}
		for _, k := range keys {
			data[k] = strings.Repeat(fmt.Sprintf("v%03d-%s|", version, k), 8192) // ~64 KiB
		}
		return data
	}
	env.source.setConfigMap("default", "cfg", content(0))
	pod := testPod(cmVolume("v", v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}))
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginConfigMap, "v")

	var stop atomic.Bool
	var reads, vanished atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, len(keys))
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b, err := os.ReadFile(filepath.Join(dir, k))
				if errors.Is(err, fs.ErrNotExist) {
					// The generation this open resolved was removed under it (the kubelet's
					// writer has the same window): no content at all, never mixed content.
					vanished.Add(1)
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				reads.Add(1)
				if err := uniform(string(b), k); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for v := 1; v <= 100; v++ {
		env.source.setConfigMap("default", "cfg", content(v))
		if _, err := env.m.SetUp(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	t.Logf("%d uniform reads, %d reads raced a removed generation", reads.Load(), vanished.Load())
	if got := readVolume(t, dir); !maps.Equal(got, content(100)) {
		t.Fatal("volume does not hold the last version")
	}
	// Only one generation is left behind.
	gens := 0
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") && e.Name() != dataDirName {
			gens++
		}
	}
	if gens != 1 {
		t.Fatalf("%d generation directories left, want 1", gens)
	}
}

// uniform checks that s is one version's unit repeated whole.
func uniform(s, key string) error {
	unit := strings.SplitAfter(s, "|")[0]
	if !strings.HasSuffix(unit, "-"+key+"|") || len(s)%len(unit) != 0 || strings.Repeat(unit, len(s)/len(unit)) != s {
		return fmt.Errorf("read of %s is not one whole version (len %d, starts %q)", key, len(s), s[:min(len(s), 40)])
	}
	if len(s) != len(unit)*8192 {
		return fmt.Errorf("read of %s is truncated: %d bytes", key, len(s))
	}
	return nil
}

func TestEscapingKeysAndPathsAreRejected(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string]string
		items   []v1.KeyToPath
		wantErr string
	}{
		{"an absolute item path", map[string]string{"k": "v"}, []v1.KeyToPath{{Key: "k", Path: "/etc/passwd"}}, `invalid path "/etc/passwd": must be a relative path`},
		{"a .. item path", map[string]string{"k": "v"}, []v1.KeyToPath{{Key: "k", Path: "../../../etc/cron.d/x"}}, `invalid path "../../../etc/cron.d/x": must not contain '..'`},
		{"a .. inside an item path", map[string]string{"k": "v"}, []v1.KeyToPath{{Key: "k", Path: "a/../../b"}}, `must not contain '..'`},
		{"an item path starting with ..", map[string]string{"k": "v"}, []v1.KeyToPath{{Key: "k", Path: "..data/x"}}, `invalid path "..data/x": must not start with '..'`},
		{"a key that is ..", map[string]string{"..": "v"}, nil, `invalid path "..": must not contain '..'`},
		{"a key starting with ..", map[string]string{"..data": "v"}, nil, `invalid path "..data": must not start with '..'`},
		{"an empty item path", map[string]string{"k": "v"}, []v1.KeyToPath{{Key: "k", Path: ""}}, `invalid path: must not be empty`},
		{"an item path naming the volume itself", map[string]string{"k": "v"}, []v1.KeyToPath{{Key: "k", Path: "./"}}, `names no file`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.source.setConfigMap("default", "cfg", tc.data)
			pod := testPod(cmVolume("v", v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Items: tc.items}))
			_, err := env.m.SetUp(context.Background(), pod)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), `volume "v": `) {
				t.Fatalf("SetUp error = %v, want `volume \"v\": ...%s`", err, tc.wantErr)
			}
			if _, err := os.Stat(filepath.Join(env.root, "..", "etc")); err == nil {
				t.Fatal("something escaped the root")
			}
		})
	}
}

// TestAtomicWriterRepairsAHalfDoneWrite starts from the states a crash can leave and checks that
// the next SetUp (by a new Manager: an agent restart) ends with exactly the payload.
func TestAtomicWriterRepairsAHalfDoneWrite(t *testing.T) {
	payload := map[string]file{"a": {[]byte("A"), 0o644}, "d/b": {[]byte("B"), 0o644}}
	tests := []struct {
		name  string
		crash func(t *testing.T, dir string)
	}{
		{"a generation written but never published", func(t *testing.T, dir string) {
			if _, err := writeGeneration(dir, map[string]file{"a": {[]byte("half"), 0o644}}); err != nil {
				t.Fatal(err)
			}
		}},
		{"a leftover ..data_tmp link", func(t *testing.T, dir string) {
			if err := os.Symlink("..nowhere", filepath.Join(dir, newDataDirName)); err != nil {
				t.Fatal(err)
			}
		}},
		{"published but the visible links missing", func(t *testing.T, dir string) {
			if _, err := writeAtomic(dir, payload); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(dir, "a"))
			os.Remove(filepath.Join(dir, "d"))
		}},
		{"an old generation and a stale link left", func(t *testing.T, dir string) {
			if _, err := writeAtomic(dir, map[string]file{"old": {[]byte("O"), 0o644}}); err != nil {
				t.Fatal(err)
			}
			if _, err := writeGeneration(dir, payload); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.crash(t, dir)
			if _, err := writeAtomic(dir, payload); err != nil {
				t.Fatal(err)
			}
			if got := readVolume(t, dir); !maps.Equal(got, map[string]string{"a": "A", "d/b": "B"}) {
				t.Fatalf("files = %v", got)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if len(names) != 4 { // ..<generation>, ..data, a, d
				t.Fatalf("entries = %v, want one generation, ..data, a, d", names)
			}
			if written, err := writeAtomic(dir, payload); err != nil || written {
				t.Fatalf("second write: written=%v err=%v, want a no-op", written, err)
			}
		})
	}
}

func TestAtomicWriterRewritesOnModeChange(t *testing.T) {
	dir := t.TempDir()
	if _, err := writeAtomic(dir, map[string]file{"a": {[]byte("A"), 0o644}}); err != nil {
		t.Fatal(err)
	}
	written, err := writeAtomic(dir, map[string]file{"a": {[]byte("A"), 0o600}})
	if err != nil || !written {
		t.Fatalf("written=%v err=%v, want a new generation", written, err)
	}
	if m := fileMode(t, filepath.Join(dir, "a")); m != 0o600 {
		t.Fatalf("mode = %#o", m)
	}
}
