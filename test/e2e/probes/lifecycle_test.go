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

// A preStop hook runs to its end before the container gets SIGTERM: the hook's line and then,
// a second later (the hook sleeps 1 s), the server's "got SIGTERM" reach the container's log.
func TestPreStopRunsBeforeSIGTERM(t *testing.T) {
	t.Parallel()
	a := framework.StartAgent(t, framework.AgentOptions{})
	// -term-delay keeps the server (and its log) around for a second after SIGTERM, so the
	// test can read the log before the pod's log directory goes.
	a.WriteManifest("hook.yaml", serverPod("hook", 10, []string{"-term-delay", "1s"}, `    lifecycle:
      preStop:
        exec:
          command: ["sh", "-c", "echo prestop > /proc/1/fd/1; sleep 1"]
`))
	p := a.WaitRunning("hook", startTimeout)
	logFile := filepath.Join(a.LogsDir, fmt.Sprintf("default_%s_%s", p.Name, p.UID), "server", "0.log")
	// The server logs "serving" once its SIGTERM handler is in place.
	framework.Eventually(t, 10*time.Second, func() (bool, string) {
		b, err := os.ReadFile(logFile)
		return err == nil && strings.Contains(string(b), "serving:"), fmt.Sprintf("%s: %v %q", logFile, err, b)
	})

	a.RemoveManifest("hook.yaml")
	var log string
	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		if b, err := os.ReadFile(logFile); err == nil {
			log = string(b)
		}
		return strings.Contains(log, "got SIGTERM"), fmt.Sprintf("no \"got SIGTERM\" in %s; last read:\n%s", logFile, log)
	})
	pre, term := logLineTime(log, "prestop"), logLineTime(log, "got SIGTERM")
	switch {
	case pre.IsZero():
		t.Fatalf("the preStop hook's output never reached the log:\n%s", log)
	case strings.Index(log, "prestop") > strings.Index(log, "got SIGTERM"):
		t.Fatalf("SIGTERM came before the preStop hook:\n%s", log)
	case term.Sub(pre) < 900*time.Millisecond:
		t.Fatalf("SIGTERM %v after the hook's echo: it did not wait for the hook's 1 s sleep:\n%s", term.Sub(pre), log)
	}
	t.Logf("SIGTERM %v after the preStop hook wrote its line", term.Sub(pre).Round(time.Millisecond))

	framework.Eventually(t, 20*time.Second, func() (bool, string) {
		n := len(a.Sandboxes(map[string]string{cri.LabelPodUID: string(p.UID)}))
		return n == 0, fmt.Sprintf("%d sandbox(es) left", n)
	})
}

// logLineTime is the runtime's timestamp of the first CRI log line ("<RFC 3339> stdout F
// text") whose text contains sub, or zero.
func logLineTime(log, sub string) time.Time {
	for _, line := range strings.Split(log, "\n") {
		ts, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.Contains(rest, sub) {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t
		}
	}
	return time.Time{}
}
