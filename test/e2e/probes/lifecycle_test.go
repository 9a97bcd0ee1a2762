package probes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// A preStop hook runs to its end before the container gets SIGTERM: the hook writes a line,
// sleeps 1 s and writes another, and both reach the container's log before the server's "got
// SIGTERM". All three go through the container's one stdout pipe, so their order in the log
// is the order they were written in, whatever the runtime's timestamps say.
func TestPreStopRunsBeforeSIGTERM(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	// -term-delay keeps the server (and its log) around for a while after SIGTERM, so the
	// test can read the log before the pod's log directory goes. The grace period leaves the
	// hook ample time even when ExecSync is slow.
	a.WriteManifest("hook.yaml", serverPod("hook", 30, []string{"-term-delay", "5s"}, `    lifecycle:
      preStop:
        exec:
          command: ["sh", "-c", "echo prestop > /proc/1/fd/1; sleep 1; echo prestop-done > /proc/1/fd/1"]
`))
	p := a.WaitRunning("hook", startTimeout)
	logFile := filepath.Join(a.LogsDir, fmt.Sprintf("default_%s_%s", p.Name, p.UID), "server", "0.log")
	// The server logs "serving" once its SIGTERM handler is in place.
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		b, err := os.ReadFile(logFile)
		return err == nil && strings.Contains(string(b), "serving:"), fmt.Sprintf("%s: %v %q", logFile, err, b)
	})

	a.RemoveManifest("hook.yaml")
	var log string
	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		if b, err := os.ReadFile(logFile); err == nil {
			log = string(b)
		}
		return logLine(log, "got SIGTERM") >= 0, fmt.Sprintf("no \"got SIGTERM\" in %s; last read:\n%s", logFile, log)
	})
	pre, done, term := logLine(log, "prestop"), logLine(log, "prestop-done"), logLine(log, "got SIGTERM")
	switch {
	case pre < 0:
		t.Fatalf("the preStop hook's output never reached the log:\n%s", log)
	case pre > term:
		t.Fatalf("SIGTERM came before the preStop hook ran:\n%s", log)
	case done < 0 || done > term:
		t.Fatalf("SIGTERM came before the preStop hook finished (its line after the 1 s sleep is not before \"got SIGTERM\"):\n%s", log)
	}
	t.Logf("the preStop hook's lines, then SIGTERM:\n%s", log)

	framework.Eventually(t, 60*time.Second, func() (bool, string) {
		n := len(a.Sandboxes(map[string]string{cri.LabelPodUID: string(p.UID)}))
		return n == 0, fmt.Sprintf("%d sandbox(es) left", n)
	})
}

// logLine is the index of the first CRI log line ("<RFC 3339> stdout F text") of stdout whose
// text is exactly text, or -1.
func logLine(log, text string) int {
	for i, line := range strings.Split(log, "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) == 4 && f[1] == "stdout" && f[3] == text {
			return i
		}
	}
	return -1
}
