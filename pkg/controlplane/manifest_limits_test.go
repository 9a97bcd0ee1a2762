package controlplane

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestReadManifestCapsTheSize(t *testing.T) {
	dir := t.TempDir()
	const limit = 1024
	tests := []struct {
		name    string
		path    string // default: a file of size bytes in dir
		size    int
		wantErr string // exact; "" for a good read
	}{
		{name: "under the limit", size: limit - 1},
		{name: "at the limit", size: limit},
		{name: "one byte over", size: limit + 1, wantErr: "big.yaml: 1025 bytes is over the 1024-byte limit of --manifest-max-bytes"},
		{name: "far over", size: 10 << 20, wantErr: "big.yaml: 10485760 bytes is over the 1024-byte limit of --manifest-max-bytes"},
		{
			// A file whose size says nothing of what it holds (it grows while being read, or
			// it never ends) is read no further than the limit.
			name: "endless", path: "/dev/zero",
			wantErr: "big.yaml: over the 1024-byte limit of --manifest-max-bytes (it grew while being read)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
				if err := os.WriteFile(path, []byte(strings.Repeat("#", tc.size)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := readManifest(path, "big.yaml", limit)
			if tc.wantErr == "" {
				if err != nil || len(data) != tc.size {
					t.Fatalf("read %d bytes, err %v; want %d bytes", len(data), err, tc.size)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("err = %v\nwant   %s", err, tc.wantErr)
			}
			if !errors.As(err, new(*FileTooLargeError)) {
				t.Errorf("err is a %T, want a *FileTooLargeError", err)
			}
		})
	}
}

func TestFileSourceOversizedFileIsUnreadableOthersCarryOn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const limit = 4096
	padded := func(name string, size int) string {
		doc := podYAML(name)
		return doc + "#" + strings.Repeat("x", size-len(doc)-2) + "\n"
	}
	writeFile(t, dir, "good.yaml", podYAML("good"))
	writeFile(t, dir, "grows.yaml", podYAML("grows"))
	writeFile(t, dir, "big.yaml", padded("big", limit+1))
	r := startFileSource(t, dir, func(s *FileSource) { s.maxBytes = limit })
	r.waitFor("default/good-node-1", "default/grows-node-1")
	entries := r.logsAbout("big.yaml")
	if len(entries) != 1 || entries[0].Message != "cannot read manifest file; its pods are removed" {
		t.Fatalf("log entries about big.yaml = %v", entries)
	}
	want := "big.yaml: 4097 bytes is over the 4096-byte limit of --manifest-max-bytes"
	if got := entries[0].Data["error"].(error).Error(); got != want {
		t.Errorf("error = %q, want %q", got, want)
	}

	// A file that grows over the limit loses its pods, like any file that cannot be read;
	// one that shrinks under it gets them back.
	writeFile(t, dir, "grows.yaml", padded("grows", 2*limit))
	r.waitFor("default/good-node-1")
	writeFile(t, dir, "big.yaml", padded("big", limit))
	r.waitFor("default/big-node-1", "default/good-node-1")
}

// jsonPod is a valid pod as JSON with extra as one more top-level field (strictly decoded:
// an unknown field).
func jsonPod(extra string) string {
	return `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
"spec": {"containers": [{"name": "app", "image": "busybox"}]}, "extra": ` + extra + "}"
}

func TestHostileDocumentsGetErrorsThatSayWhy(t *testing.T) {
	deepList := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		name     string
		file     string
		data     string
		wantPods []string
		wantErrs []string
	}{
		{
			name:     "100000-deep JSON",
			file:     "deep.json",
			data:     deepList(100000),
			wantErrs: []string{"deep.json: document 0: nesting deeper than 10000 levels"},
		},
		{
			name:     "100000-deep JSON objects",
			file:     "deep.json",
			data:     strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000),
			wantErrs: []string{"deep.json: document 0: nesting deeper than 10000 levels"},
		},
		{
			name:     "JSON one level over the limit",
			file:     "deep.json",
			data:     jsonPod(deepList(10000)),
			wantErrs: []string{"deep.json: document 0: nesting deeper than 10000 levels"},
		},
		{
			// As deep as the API server takes: decoded, and its real problem reported.
			name:     "JSON at the limit",
			file:     "deep.json",
			data:     jsonPod(deepList(9999)),
			wantErrs: []string{"deep.json: document 0: extra: unknown field"},
		},
		{
			name: "brackets in strings are not nesting",
			file: "web.json",
			data: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "annotations": {"a": "` + strings.Repeat(`[{\"`, 20000) + `"}},
"spec": {"containers": [{"name": "app", "image": "busybox"}]}}`,
			wantPods: []string{"default/web-node-1"},
		},
		{
			// The YAML parser stops at 10000 levels of flow collections itself, and says so.
			name:     "100000-deep YAML",
			file:     "deep.yaml",
			data:     deepList(100000),
			wantErrs: []string{"deep.yaml: document 0: yaml: exceeded max depth of 10000"},
		},
		{
			// It counts indentation and flow levels apart; together they may go deeper.
			name:     "YAML deep in indentation and flow together",
			file:     "deep.yaml",
			data:     "a:\n  " + strings.Repeat("- ", 6000) + deepList(6000) + "\n",
			wantErrs: []string{"deep.yaml: document 0: nesting deeper than 10000 levels"},
		},
		{
			name:     "invalid UTF-8 in YAML: line and offset in the file",
			file:     "bad.yaml",
			data:     podYAML("good") + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b\xe9d}\n",
			wantPods: []string{"default/good-node-1"},
			wantErrs: []string{"bad.yaml: document 1: invalid UTF-8 at line 12, byte offset 153"},
		},
		{
			name:     "invalid UTF-8 in a YAML comment",
			file:     "bad.yaml",
			data:     "# caf\xe9\n" + podYAML("web"),
			wantErrs: []string{"bad.yaml: document 0: invalid UTF-8 at line 1, byte offset 5"},
		},
		{
			// The JSON decoder would have made it U+FFFD.
			name:     "invalid UTF-8 in JSON",
			file:     "bad.json",
			data:     "{\"apiVersion\": \"v1\",\n \"kind\": \"Pod\", \"metadata\": {\"name\": \"w\xffb\"}}",
			wantErrs: []string{"bad.json: document 0: invalid UTF-8 at line 2, byte offset 60"},
		},
		{
			name:     "UTF-16",
			file:     "web.yaml",
			data:     "\xff\xfea\x00:\x00 \x001\x00",
			wantErrs: []string{"web.yaml: document 0: invalid UTF-8 at line 1, byte offset 0: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"},
		},
		{
			name:     "JSON syntax error",
			file:     "bad.json",
			data:     "{\"apiVersion\": \"v1\",\n \"kind\": Pod}",
			wantErrs: []string{`bad.json: document 0: invalid JSON at line 2, byte offset 30: invalid character 'P' looking for beginning of value`},
		},
		{
			name:     "bad document separator",
			file:     "sep.yaml",
			data:     podYAML("a") + "--- b\n" + podYAML("c"),
			wantPods: []string{"default/c-node-1"},
			wantErrs: []string{"sep.yaml: document 0: invalid YAML document separator at line 9: b"},
		},
		{
			name:     "junk",
			file:     "junk.yaml",
			data:     "\x00\x01\x02\x8f\x90junk",
			wantErrs: []string{"junk.yaml: document 0: invalid UTF-8 at line 1, byte offset 3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pods, errs := ParseManifests(tc.file, []byte(tc.data), testNode)
			if got := podNames(pods); !slices.Equal(got, tc.wantPods) {
				t.Errorf("pods = %q, want %q", got, tc.wantPods)
			}
			if got := errorStrings(errs); !slices.Equal(got, tc.wantErrs) {
				t.Errorf("errors =\n  %q\nwant\n  %q", got, tc.wantErrs)
			}
		})
	}
}

func TestHostileDocumentsAreCheap(t *testing.T) {
	// Files as large as the default limit allows, built to be expensive.
	deep := strings.Repeat("[", DefaultMaxFileBytes)
	tests := []struct {
		name      string
		file      string
		data      string
		maxAlloc  uint64 // bytes allocated by the parse
		maxMillis int64  // a generous bound: the point is not seconds, nor a crash
	}{
		{"deep JSON", "deep.json", deep, 64 << 10, 500},
		{"deep YAML", "deep.yaml", deep, 16 << 20, 2000},
		{"junk", "junk.yaml", strings.Repeat("\xff", DefaultMaxFileBytes), 64 << 10, 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.data)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, errs := ParseManifests(tc.file, data, testNode)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if len(errs) != 1 {
				t.Fatalf("errors = %q, want one", errorStrings(errs))
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes: %s, %d bytes allocated", len(data), took, alloc)
			if alloc > tc.maxAlloc {
				t.Errorf("the parse allocated %d bytes, want at most %d", alloc, tc.maxAlloc)
			}
			if took.Milliseconds() > tc.maxMillis {
				t.Errorf("the parse took %s, want at most %d ms", took, tc.maxMillis)
			}
		})
	}
}

func TestScanKeepsNoBytesOfABadFile(t *testing.T) {
	// What a scan keeps of a file is its hash and what was parsed from it: the memory of a
	// large bad file is garbage once the scan is over.
	dir := t.TempDir()
	writeFile(t, dir, "deep.json", strings.Repeat("[", DefaultMaxFileBytes-1))
	writeFile(t, dir, "junk.yaml", strings.Repeat("\xff", DefaultMaxFileBytes-1))
	writeFile(t, dir, "big.yaml", strings.Repeat("#", 64<<20))
	logger, _ := logtest.NewNullLogger()
	// An hour from now, every file has settled: its errors are final, not awaited.
	sc := newScanner(dir, testNode, logrus.NewEntry(logger), func() time.Time { return time.Now().Add(time.Hour) })
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	sc.scan()
	sc.scan()
	if grown := int64(heap()) - int64(before); grown > 256<<10 {
		t.Errorf("the heap grew by %d bytes over two scans, want under 256 KiB", grown)
	}
	for _, name := range []string{"deep.json", "junk.yaml", "big.yaml"} {
		st := sc.files[name]
		if st == nil || (len(st.parsed.errs) == 0 && st.readErr == "") {
			t.Errorf("%s: no error remembered", name)
		}
	}
	runtime.KeepAlive(sc)
}
