package restart

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// TestContainerLogRotatesWithoutLosingLines: a container writes numbered lines fast while
// the agent rotates its log at 64Ki keeping 3 files. Rotated files appear, there are never
// more than 3, and the lines kept run without a gap up to the last one written: only the
// oldest may be gone, with the oldest files.
func TestContainerLogRotatesWithoutLosingLines(t *testing.T) {
	t.Parallel()
	const (
		lines    = 30000
		maxFiles = 3
	)
	a := framework.StartAgent(t, framework.AgentOptions{ExtraArgs: []string{
		"--container-log-max-size", "64Ki", "--container-log-max-files", strconv.Itoa(maxFiles),
		"--container-log-monitor-interval", "1s",
	}})
	// About 2000 lines (100 KB of CRI log) a second for 15 s: a rotation at nearly every pass.
	// `echo` is a shell builtin, so the loop forks only for the pauses.
	a.WriteManifest("chatty.yaml", pod("chatty", "Always", fmt.Sprintf(
		`i=0; while [ $i -lt %d ]; do echo "seq $i"; i=$((i+1)); if [ $((i %% 200)) -eq 0 ]; then usleep 100000; fi; done; echo done; exec sleep 100000`, lines)))
	a.WaitRunning("chatty", 60*time.Second)

	var dir string
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		m, _ := filepath.Glob(filepath.Join(a.LogsDir, "*_"+a.PodName("chatty")+"_*", "main"))
		if len(m) == 1 {
			dir = m[0]
			return true, ""
		}
		return false, fmt.Sprintf("log directories of chatty/main: %v", m)
	})
	current := filepath.Join(dir, "0.log")

	// Watch the directory while the container writes: count files, remember rotated names.
	var (
		mu      sync.Mutex
		most    int
		mostSaw []string
		rotated = map[string]bool{}
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			es, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			var names []string
			for _, e := range es {
				names = append(names, e.Name())
			}
			mu.Lock()
			if len(names) > most {
				most, mostSaw = len(names), names
			}
			for _, n := range names {
				if strings.HasPrefix(n, "0.log.") {
					rotated[n] = true
				}
			}
			mu.Unlock()
		}
	}()

	// The last line may already have been rotated out of the current file: look in all.
	framework.Eventually(t, 90*time.Second, func() (bool, string) {
		names, _ := filepath.Glob(current + "*")
		for _, name := range names {
			if b, err := os.ReadFile(name); err == nil && strings.Contains(string(b), " done\n") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("the container has not written all its lines yet (files %v)", names)
	})
	// Let rotation settle: the current file exists and the directory stays the same for
	// more than a pass (a rotation under way renames 0.log until containerd reopens it).
	snapshot := func() string {
		es, _ := os.ReadDir(dir)
		var b strings.Builder
		for _, e := range es {
			if info, err := e.Info(); err == nil {
				fmt.Fprintf(&b, "%s:%d ", e.Name(), info.Size())
			}
		}
		return b.String()
	}
	prev := snapshot()
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		time.Sleep(1500 * time.Millisecond)
		cur := snapshot()
		_, err := os.Stat(current)
		settled := err == nil && cur == prev
		prev = cur
		return settled, "the log directory is still changing: " + cur
	})
	close(stop)
	<-watched

	mu.Lock()
	if most > maxFiles {
		t.Errorf("saw %d files in the container's log directory, more than --container-log-max-files %d: %v", most, maxFiles, mostSaw)
	}
	if len(rotated) < maxFiles {
		t.Errorf("only %d rotated files appeared while %d lines were written at 64Ki: %v", len(rotated), lines, rotated)
	}
	mu.Unlock()

	// Oldest first: the rotated files by name (a timestamp), then the current file.
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "0.log.") {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	files = append(files, "0.log")
	if len(files) > maxFiles {
		t.Errorf("files at the end: %v, more than %d", files, maxFiles)
	}
	var seq []int
	for _, name := range files {
		seq = append(seq, readSeq(t, filepath.Join(dir, name))...)
	}
	if len(seq) == 0 {
		t.Fatalf("no numbered lines in %v", files)
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] != seq[i-1]+1 {
			t.Fatalf("line %d follows line %d across %v: lines were lost or reordered at a rotation", seq[i], seq[i-1], files)
		}
	}
	if last := seq[len(seq)-1]; last != lines-1 {
		t.Fatalf("the last line kept is %d, want %d", last, lines-1)
	}
	if seq[0] == 0 {
		t.Errorf("line 0 is still there: nothing was removed although far more than %d files' worth was written", maxFiles)
	}
	t.Logf("kept lines %d..%d in %v; %d rotations seen", seq[0], seq[len(seq)-1], files, len(rotated))
	if strings.Contains(a.Log(), "container log rotation failed") {
		t.Errorf("the agent logged a rotation failure")
	}
}

// readSeq returns the numbers of the "seq N" lines of a CRI log file
// (<time> <stream> <F|P> <content>), failing on a line split by the runtime.
func readSeq(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 {
			t.Fatalf("%s: not a CRI log line: %q", path, sc.Text())
		}
		if fields[2] != "F" {
			t.Fatalf("%s: partial line %q", path, sc.Text())
		}
		n, ok := strings.CutPrefix(fields[3], "seq ")
		if !ok {
			continue // "done"
		}
		v, err := strconv.Atoi(n)
		if err != nil {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
