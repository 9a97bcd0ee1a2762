package agent

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// agentPID finds the agent's process by its config file, which is the test's own.
func agentPID(t *testing.T, a *framework.Agent) int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--config" && args[i+1] == a.ConfigFile {
				pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				if err != nil {
					t.Fatal(err)
				}
				return pid
			}
		}
	}
	t.Fatalf("no process runs with --config %s", a.ConfigFile)
	return 0
}

// rssKiB is the process's resident memory (VmRSS), in KiB.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmRSS: %q: %v", rest, err)
			}
			return kib
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func TestHostileManifestsAreReportedAndCostLittleMemory(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	a.WriteManifest("good.yaml", sleeper("good"))
	a.WaitRunning("good", 60*time.Second)
	ids := containerIDs(a)
	pid := agentPID(t, a)
	before := rssKiB(t, pid)

	// 10 MiB of junk, ten times the default limit.
	junk := make([]byte, 10<<20)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	a.WriteManifest("junk.yaml", string(junk))
	a.WriteManifest("deep.json", strings.Repeat("[", 100000)+strings.Repeat("]", 100000))
	latin1 := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: caf\xe9\nspec:\n  containers: [{name: a, image: x}]\n"
	a.WriteManifest("latin1.yaml", latin1)
	a.WriteManifest("probe.yaml", strings.Replace(sleeper("probe"), `    command: ["sleep", "100000"]
  - name: b`, `    command: ["sleep", "100000"]
    livenessProbe: {httpGet: {path: /, port: 70000}}
  - name: b`, 1))

	// Each is reported once it has settled (a second), naming the file and what is wrong.
	for _, want := range [][]string{
		{"file=junk.yaml", "cannot read manifest file",
			"junk.yaml: 10485760 bytes is over the 1048576-byte limit of --manifest-max-bytes"},
		{"file=deep.json", "document=0", "nesting deeper than 10000 levels"},
		{"file=latin1.yaml", "document=0",
			fmt.Sprintf("invalid UTF-8 at line 4, byte offset %d", strings.IndexByte(latin1, 0xe9))},
		{"file=probe.yaml", "document=0",
			"spec.containers[0].livenessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive"},
	} {
		t.Log(a.WaitLog(10*time.Second, want...))
	}

	// Resident memory right after, and after a full rescan (every 20 s) has read the
	// directory again: it stays near where it was.
	after := rssKiB(t, pid)
	time.Sleep(25 * time.Second)
	later := rssKiB(t, pid)
	t.Logf("agent VmRSS: %d KiB before the bad files, %d KiB once they were reported, %d KiB 25 s later", before, after, later)
	for _, rss := range []int{after, later} {
		if grown := rss - before; grown > 30<<10 {
			t.Errorf("VmRSS grew by %d KiB (from %d KiB to %d KiB), want at most 30 MiB", grown, before, rss)
		}
	}

	// The good pod ran on untouched; the bad one never came.
	if got := containerIDs(a); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("the good pod's containers changed:\nbefore %v\nafter  %v", ids, got)
	}
	a.WaitRunning("good", 5*time.Second)
	if p := a.FindPod("probe"); p != nil {
		t.Errorf("the pod with probe port 70000 was admitted: %s", p.Name)
	}
}
