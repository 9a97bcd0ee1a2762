package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	rt    *fakeRuntime
	clock *clocktesting.FakeClock
	r     *Rotator
	dir   string // the container's log directory
	path  string // its current log file
}

func newFixture(t *testing.T, maxSize int64, maxFiles int) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "default_web_uid1", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{rt: newFakeRuntime(), clock: clocktesting.NewFakeClock(t0), dir: dir, path: filepath.Join(dir, "0.log")}
	t.Cleanup(f.rt.close)
	if err := f.rt.start("c1", f.path); err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	r, err := New(Config{
		List:     func(context.Context) ([]Container, error) { return []Container{{ID: "c1", LogPath: f.path}}, nil },
		MaxSize:  maxSize,
		MaxFiles: maxFiles,
		Clock:    f.clock,
		Log:      logrus.NewEntry(l),
	}, f.rt)
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	return f
}

// pass advances the clock a second (so each rotation gets its own name) and runs one pass.
func (f *fixture) pass(t *testing.T) {
	t.Helper()
	f.clock.Step(time.Second)
	if err := f.r.RotateOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// files lists the container's log directory, sorted.
func (f *fixture) files(t *testing.T) []string {
	t.Helper()
	es, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func writeFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Repeat("x", size)), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestSmallLogIsLeftAlone(t *testing.T) {
	f := newFixture(t, 100, 3)
	if err := f.rt.write("c1", strings.Repeat("x", 100)); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	if got := f.files(t); len(got) != 1 || got[0] != "0.log" {
		t.Fatalf("files = %v, want only 0.log", got)
	}
	if n := len(f.rt.reopens()); n != 0 {
		t.Fatalf("%d reopen calls for a file within the limit", n)
	}
}

func TestLogOverTheLimitIsRenamedAndReopened(t *testing.T) {
	f := newFixture(t, 100, 3)
	if err := f.rt.write("c1", strings.Repeat("x", 101)); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	rotated := "0.log." + t0.Add(time.Second).Format(timestampFormat)
	if got, want := f.files(t), []string{"0.log", rotated}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	if got := f.rt.reopens(); len(got) != 1 || got[0] != "c1" {
		t.Fatalf("reopen calls = %v, want [c1]", got)
	}
	if st, err := os.Stat(f.path); err != nil || st.Size() != 0 {
		t.Fatalf("the new current file: %v, %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(f.dir, rotated)); err != nil || st.Size() != 101 {
		t.Fatalf("the rotated file: %v, %v", st, err)
	}
}

func TestOldestRotatedFilesGoSoMaxFilesCountsTheCurrentOne(t *testing.T) {
	f := newFixture(t, 100, 3)
	// Five older rotations (as if max-files was larger before), plus files that are not ours.
	for i := 1; i <= 5; i++ {
		writeFile(t, filepath.Join(f.dir, "0.log."+t0.Add(-time.Duration(i)*time.Hour).Format(timestampFormat)), 10)
	}
	for _, other := range []string{"1.log", "0.log.tmp", "0.log.gz", "notes"} {
		writeFile(t, filepath.Join(f.dir, other), 10)
	}
	f.pass(t) // within the limit: only the excess beyond max-files-1 rotated goes
	want := []string{
		"0.log",
		"0.log." + t0.Add(-2*time.Hour).Format(timestampFormat),
		"0.log." + t0.Add(-1*time.Hour).Format(timestampFormat),
		"0.log.gz", "0.log.tmp", "1.log", "notes",
	}
	if got := f.files(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a pass within the limit: files = %v, want %v", got, want)
	}

	if err := f.rt.write("c1", strings.Repeat("x", 200)); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	want = []string{
		"0.log",
		"0.log." + t0.Add(-1*time.Hour).Format(timestampFormat),
		"0.log." + t0.Add(2*time.Second).Format(timestampFormat),
		"0.log.gz", "0.log.tmp", "1.log", "notes",
	}
	if got := f.files(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a rotation: files = %v, want %v", got, want)
	}
}

// TestASecondRotationInTheSameSecondWaitsAndRemovesNothing: the rotated name is taken, so
// the pass leaves everything, the oldest rotated file included, for the next second.
func TestASecondRotationInTheSameSecondWaitsAndRemovesNothing(t *testing.T) {
	f := newFixture(t, 100, 3)
	older := "0.log." + t0.Add(-time.Hour).Format(timestampFormat)
	writeFile(t, filepath.Join(f.dir, older), 10)
	if err := f.rt.write("c1", strings.Repeat("x", 101)); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	first := "0.log." + t0.Add(time.Second).Format(timestampFormat)
	if err := f.rt.write("c1", strings.Repeat("y", 101)); err != nil {
		t.Fatal(err)
	}
	if err := f.r.RotateOnce(context.Background()); err != nil { // same second
		t.Fatal(err)
	}
	if got, want := f.files(t), []string{"0.log", older, first}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	f.pass(t)
	second := "0.log." + t0.Add(2*time.Second).Format(timestampFormat)
	if got, want := f.files(t), []string{"0.log", first, second}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("next second: files = %v, want %v", got, want)
	}
}

func TestFailedReopenPutsTheFileBackAndRetries(t *testing.T) {
	f := newFixture(t, 100, 3)
	if err := f.rt.write("c1", strings.Repeat("x", 150)); err != nil {
		t.Fatal(err)
	}
	f.rt.err = errors.New("runtime unavailable")
	f.pass(t)
	if got := f.files(t); len(got) != 1 || got[0] != "0.log" {
		t.Fatalf("after a failed reopen: files = %v, want the current file back", got)
	}
	// The runtime still writes to the same file, which is where it is again.
	if err := f.rt.write("c1", "more"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(f.path); err != nil || len(b) != 154 {
		t.Fatalf("current file: %d bytes, %v; want 154", len(b), err)
	}
	if msg := f.r.failing["c1"]; !strings.Contains(msg, "runtime unavailable") {
		t.Fatalf("the failure is not recorded for logging once: %q", msg)
	}

	f.rt.err = nil
	f.pass(t)
	if got := f.files(t); len(got) != 2 {
		t.Fatalf("the next pass did not rotate: files = %v", got)
	}
	if _, ok := f.r.failing["c1"]; ok {
		t.Fatal("the recovered container is still marked failing")
	}
}

func TestNoLineIsLostAcrossRotations(t *testing.T) {
	const maxFiles = 3
	f := newFixture(t, 1000, maxFiles)
	next := 0
	for range 40 {
		for range 37 { // about 1.3 KB a pass: every pass rotates
			if err := f.rt.write("c1", fmt.Sprintf("line %06d\n", next)); err != nil {
				t.Fatal(err)
			}
			next++
		}
		f.pass(t)
		if got := f.files(t); len(got) > maxFiles {
			t.Fatalf("%d files, more than max-files %d: %v", len(got), maxFiles, got)
		}
	}
	// Rotated files in name (= age) order, then the current one.
	names := f.files(t)
	sort.Slice(names, func(i, j int) bool {
		if names[i] == "0.log" || names[j] == "0.log" {
			return names[j] == "0.log" && names[i] != "0.log"
		}
		return names[i] < names[j]
	})
	var seq []int
	for _, name := range names {
		fh, err := os.Open(filepath.Join(f.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "line "))
			if err != nil {
				t.Fatalf("%s: bad line %q", name, sc.Text())
			}
			seq = append(seq, n)
		}
		fh.Close()
	}
	if len(seq) == 0 || seq[len(seq)-1] != next-1 {
		t.Fatalf("the newest line is missing: got %d lines ending %v, want ...%d", len(seq), seq[max(0, len(seq)-3):], next-1)
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] != seq[i-1]+1 {
			t.Fatalf("line %d follows line %d: lines lost or out of order", seq[i], seq[i-1])
		}
	}
	if seq[0] == 0 {
		t.Fatal("nothing was removed although far more than max-files files were written")
	}
}

func TestRotationsInOneSecondWaitForTheNextName(t *testing.T) {
	f := newFixture(t, 10, 3)
	if err := f.rt.write("c1", strings.Repeat("x", 20)); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	if err := f.rt.write("c1", strings.Repeat("y", 20)); err != nil {
		t.Fatal(err)
	}
	// Same second: the name is taken, so this pass leaves the file for the next one.
	if err := f.r.RotateOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.rt.reopens()); n != 1 {
		t.Fatalf("%d reopen calls, want 1 (no rotation onto a taken name)", n)
	}
	f.pass(t)
	if n := len(f.rt.reopens()); n != 2 {
		t.Fatalf("%d reopen calls, want 2", n)
	}
}

func TestNewValidatesAndDefaults(t *testing.T) {
	list := func(context.Context) ([]Container, error) { return nil, nil }
	r, err := New(Config{List: list}, newFakeRuntime())
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.MaxSize != 10<<20 || r.cfg.MaxFiles != 5 || r.cfg.Period != 10*time.Second {
		t.Fatalf("defaults = %d bytes, %d files, %s", r.cfg.MaxSize, r.cfg.MaxFiles, r.cfg.Period)
	}
	for _, cfg := range []Config{{}, {List: list, MaxFiles: 1}, {List: list, MaxSize: -1}} {
		if _, err := New(cfg, newFakeRuntime()); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"10Mi", 10 << 20, true},
		{"64Ki", 64 << 10, true},
		{"1000", 1000, true},
		{"1M", 1000000, true},
		{"0", 0, false},
		{"-1Mi", 0, false},
		{"ten", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}
