package nodeapi

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The CRI log file of these tests: times are 10:00:0N on one day.
const testLog = `2026-01-02T10:00:01.000000001Z stdout F one
2026-01-02T10:00:02.5Z stderr F two
2026-01-02T10:00:03Z stdout P thr
2026-01-02T10:00:03.1Z stderr F four
2026-01-02T10:00:04Z stdout P e
2026-01-02T10:00:05Z stdout F e
not a log line
2026-01-02T10:00:06Z stdout F 
2026-01-02T10:00:07Z stdout F seven
`

func writeLog(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func at(sec int) time.Time { return time.Date(2026, 1, 2, 10, 0, sec, 0, time.UTC) }

func TestCopyLogAppliesTheOptions(t *testing.T) {
	all := logOptions{tail: -1, stdout: true, stderr: true}
	with := func(f func(*logOptions)) logOptions { o := all; f(&o); return o }
	for _, tc := range []struct {
		name string
		opts logOptions
		want string
	}{
		{"everything, partial lines joined, bad lines skipped", all, "one\ntwo\nfour\nthree\n\nseven\n"},
		{"tail counts joined lines", with(func(o *logOptions) { o.tail = 3 }), "three\n\nseven\n"},
		{"tail 0 prints nothing", with(func(o *logOptions) { o.tail = 0 }), ""},
		{"tail larger than the file", with(func(o *logOptions) { o.tail = 100 }), "one\ntwo\nfour\nthree\n\nseven\n"},
		{"since is inclusive and uses the first part's time", with(func(o *logOptions) { o.since = at(3) }), "four\nthree\n\nseven\n"},
		{"tail then since", with(func(o *logOptions) { o.tail = 2; o.since = at(7) }), "seven\n"},
		{"limit cuts mid-line", with(func(o *logOptions) { o.limit = 6 }), "one\ntw"},
		{"limit at a line end", with(func(o *logOptions) { o.limit = 4 }), "one\n"},
		{"stdout only", with(func(o *logOptions) { o.stderr = false }), "one\nthree\n\nseven\n"},
		{"stderr only", with(func(o *logOptions) { o.stdout = false }), "two\nfour\n"},
		{"timestamps in fixed width", with(func(o *logOptions) { o.timestamps = true; o.tail = 2 }),
			"2026-01-02T10:00:06.000000000Z \n2026-01-02T10:00:07.000000000Z seven\n"},
		{"timestamps count towards the limit", with(func(o *logOptions) { o.timestamps = true; o.limit = 33 }),
			"2026-01-02T10:00:01.000000001Z on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			var bad []error
			err := copyLog(context.Background(), writeLog(t, testLog), tc.opts, &out, func() {}, nil, func(err error) { bad = append(bad, err) })
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("got %q, want %q", out.String(), tc.want)
			}
			if tc.opts.limit == 0 && (len(bad) != 1 || !strings.Contains(bad[0].Error(), "not a log line")) {
				t.Errorf("bad lines reported: %v", bad)
			}
		})
	}
}

func TestCopyLogPrintsAnUnfinishedPartialLineAsItIs(t *testing.T) {
	var out bytes.Buffer
	p := writeLog(t, "2026-01-02T10:00:01Z stdout P half a\n2026-01-02T10:00:02Z stdout P  line\n")
	if err := copyLog(context.Background(), p, logOptions{tail: -1, stdout: true, stderr: true}, &out, func() {}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != "half a line" {
		t.Errorf("got %q", out.String())
	}
}

func TestCopyLogOfAMissingFileIsNotExist(t *testing.T) {
	err := copyLog(context.Background(), filepath.Join(t.TempDir(), "none.log"), logOptions{tail: -1, stdout: true}, &bytes.Buffer{}, func() {}, nil, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

// growingLog drives a follow: each wait appends the next chunk (which may end mid-line) and
// records what had been flushed before it.
type growingLog struct {
	t       *testing.T
	path    string
	chunks  []string
	out     *bytes.Buffer
	flushed []string
	running bool
	checks  int
}

func (g *growingLog) wait(ctx context.Context) error {
	if len(g.chunks) == 0 {
		g.running = false // nothing more will come: the container exits
		return nil
	}
	f, err := os.OpenFile(g.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(g.chunks[0]); err != nil {
		g.t.Fatal(err)
	}
	g.chunks = g.chunks[1:]
	return nil
}

func TestCopyLogFollowsAGrowingFileUntilTheContainerStops(t *testing.T) {
	p := writeLog(t, "2026-01-02T10:00:01Z stdout F old 1\n2026-01-02T10:00:02Z stdout F old 2\n")
	var out bytes.Buffer
	g := &growingLog{t: t, path: p, out: &out, running: true, chunks: []string{
		"2026-01-02T10:00:03Z stdout F new 1\n2026-01-02T10:00:04Z stdout P new",
		" 2 still writing", // the line is not complete yet: nothing of it may show
		"\n2026-01-02T10:00:05Z stdout F  2\n",
		"2026-01-02T10:00:06Z stderr F last\n",
	}}
	fl := &follower{
		running:    func(context.Context) bool { g.checks++; return g.running },
		wait:       g.wait,
		checkEvery: 1,
	}
	err := copyLog(context.Background(), p, logOptions{tail: 1, follow: true, stdout: true, stderr: true}, &out,
		func() { g.flushed = append(g.flushed, out.String()) }, fl, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"old 2\n", // the tail, flushed before following
		"old 2\nnew 1\n",
		"old 2\nnew 1\n",
		"old 2\nnew 1\nnew 2 still writing 2\n",
		"old 2\nnew 1\nnew 2 still writing 2\nlast\n",
	}
	for i, w := range want {
		if i >= len(g.flushed) || g.flushed[i] != w {
			t.Fatalf("flush %d = %q, want %q (all flushes %q)", i, at0(g.flushed, i), w, g.flushed)
		}
	}
	if out.String() != want[len(want)-1] {
		t.Errorf("output %q", out.String())
	}
	if g.checks == 0 {
		t.Error("the container's state was never checked")
	}
}

func at0(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "<none>"
}

func TestCopyLogFollowEndsWithTheClient(t *testing.T) {
	p := writeLog(t, "2026-01-02T10:00:01Z stdout F a\n")
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	fl := &follower{
		running: func(context.Context) bool { return true },
		wait: func(ctx context.Context) error {
			cancel()
			return ctx.Err()
		},
	}
	if err := copyLog(ctx, p, logOptions{tail: -1, follow: true, stdout: true}, &out, func() {}, fl, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\n" {
		t.Errorf("got %q", out.String())
	}
}

func TestCopyLogFollowsARotatedFile(t *testing.T) {
	p := writeLog(t, "2026-01-02T10:00:01Z stdout F before\n")
	var out bytes.Buffer
	step := 0
	fl := &follower{
		running: func(context.Context) bool { return step < 3 },
		wait: func(context.Context) error {
			step++
			switch step {
			case 1: // the rotator renames the file; the runtime still writes to it
				if err := os.Rename(p, p+".20260102-100002"); err != nil {
					t.Fatal(err)
				}
				f, _ := os.OpenFile(p+".20260102-100002", os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString("2026-01-02T10:00:02Z stdout F in the old file\n")
				f.Close()
			case 2: // ReopenContainerLog: a new file under the name
				os.WriteFile(p, []byte("2026-01-02T10:00:03Z stdout F in the new file\n"), 0o644)
			}
			return nil
		},
		checkEvery: 1,
	}
	if err := copyLog(context.Background(), p, logOptions{tail: -1, follow: true, stdout: true}, &out, func() {}, fl, nil); err != nil {
		t.Fatal(err)
	}
	if want := "before\nin the old file\nin the new file\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestParseLogOptions(t *testing.T) {
	now := at(30)
	for _, tc := range []struct {
		query   string
		want    logOptions
		prev    bool
		wantErr string
	}{
		{query: "", want: logOptions{tail: -1, stdout: true, stderr: true}},
		{query: "follow=true&previous=1&timestamps=true&tailLines=5&limitBytes=10",
			want: logOptions{tail: 5, limit: 10, follow: true, timestamps: true, stdout: true, stderr: true}, prev: true},
		{query: "tail=7", want: logOptions{tail: 7, stdout: true, stderr: true}},
		{query: "tail=all", want: logOptions{tail: -1, stdout: true, stderr: true}},
		{query: "sinceSeconds=10", want: logOptions{tail: -1, since: at(20), stdout: true, stderr: true}},
		{query: "sinceSeconds=9223372036854775807", want: logOptions{tail: -1, since: time.Unix(0, 0), stdout: true, stderr: true}},
		{query: "sinceSeconds=10000000000", want: logOptions{tail: -1, since: time.Unix(0, 0), stdout: true, stderr: true}},
		{query: "sinceTime=2026-01-02T10:00:05Z", want: logOptions{tail: -1, since: at(5), stdout: true, stderr: true}},
		{query: "stream=Stderr", want: logOptions{tail: -1, stderr: true}},
		{query: "tailLines=-1", wantErr: "tailLines=-1 must be at least 0"},
		{query: "tailLines=ten", wantErr: `tailLines="ten" is not an integer`},
		{query: "limitBytes=0", wantErr: "limitBytes=0 must be at least 1"},
		{query: "limitBytes=-5", wantErr: "limitBytes=-5 must be at least 1"},
		{query: "sinceSeconds=0", wantErr: "sinceSeconds=0 must be at least 1"},
		{query: "sinceSeconds=5&sinceTime=2026-01-02T10:00:05Z", wantErr: "at most one"},
		{query: "sinceTime=yesterday", wantErr: "RFC 3339"},
		{query: "follow=maybe", wantErr: `follow="maybe" is not a boolean`},
		{query: "stream=both", wantErr: "stream"},
		{query: "stream=Stdout&tailLines=1", wantErr: "tailLines cannot be combined"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := parseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, prev, err := parseLogOptions(q, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || prev != tc.prev {
				t.Errorf("got %+v previous=%v, want %+v previous=%v", got, prev, tc.want, tc.prev)
			}
		})
	}
}

func parseQuery(s string) (url.Values, error) { return url.ParseQuery(s) }
