package main

import (
	"bufio"
	"os"
	"strings"
	"time"
)

// criCalls are the moments containerd logged receiving and answering the three calls that
// start a pod (its CRI plugin logs each call at info level with a nanosecond timestamp).
type criCalls struct {
	runStart, runEnd       time.Time
	createStart, createEnd time.Time
	startStart, startEnd   time.Time
}

func (c criCalls) complete() bool {
	for _, t := range []time.Time{c.runStart, c.runEnd, c.createStart, c.createEnd, c.startStart} {
		if t.IsZero() {
			return false
		}
	}
	return true
}

// breakdownStep is one step of a pod start; at computes it from a sample and its calls.
type breakdownStep struct {
	name string
	at   func(s startSample, c criCalls) time.Duration
}

var breakdownSteps = []breakdownStep{
	{"t0 -> RunPodSandbox received", func(s startSample, c criCalls) time.Duration { return c.runStart.Sub(s.t0) }},
	{"RunPodSandbox (in containerd)", func(s startSample, c criCalls) time.Duration { return c.runEnd.Sub(c.runStart) }},
	{"RunPodSandbox returned -> CreateContainer received", func(s startSample, c criCalls) time.Duration { return c.createStart.Sub(c.runEnd) }},
	{"CreateContainer (in containerd)", func(s startSample, c criCalls) time.Duration { return c.createEnd.Sub(c.createStart) }},
	{"CreateContainer returned -> StartContainer received", func(s startSample, c criCalls) time.Duration { return c.startStart.Sub(c.createEnd) }},
	{"StartContainer received -> container StartedAt", func(s startSample, c criCalls) time.Duration { return s.started.Sub(c.startStart) }},
}

// podStartBreakdown splits the pod start samples into steps, from containerd's log, and the
// agent's first step further from the agent's log when it has sub-second timestamps. It
// returns nil when containerd's log cannot be read or does not show the calls.
func podStartBreakdown(containerdLog, agentLogPath string, agentS, floorS []startSample) []breakdownRow {
	calls, err := readCRICalls(containerdLog)
	if err != nil {
		return nil
	}
	stepSamples := func(ss []startSample, step breakdownStep) samples {
		var out samples
		for _, s := range ss {
			c := calls.forSample(s)
			if c.complete() {
				out = append(out, step.at(s, c))
			}
		}
		return out
	}
	var rows []breakdownRow
	for _, step := range breakdownSteps {
		a, f := stepSamples(agentS, step), stepSamples(floorS, step)
		if len(a) == 0 || len(f) == 0 {
			return nil
		}
		rows = append(rows, breakdownRow{name: step.name, agent: a.percentile(50), floor: f.percentile(50), hasFloor: true})
	}

	// The agent's own log says when the file source handed the new pod set over ("manifest
	// pods changed", after the inotify event, the debounce and the rescan).
	alog := newAgentLog(agentLogPath)
	if alog.refresh() != nil || alog.coarse {
		return rows
	}
	var watch, worker samples
	for _, s := range agentS {
		c := calls.forSample(s)
		ln := alog.firstAfter("manifest pods changed", s.t0)
		if ln == nil || !c.complete() || ln.time.After(c.runStart) {
			continue
		}
		watch = append(watch, ln.time.Sub(s.t0))
		worker = append(worker, c.runStart.Sub(ln.time))
	}
	if len(watch) > 0 {
		first := []breakdownRow{
			rows[0],
			{name: "  of which: rename -> agent logs \"manifest pods changed\"", agent: watch.percentile(50)},
			{name: "  of which: \"manifest pods changed\" -> RunPodSandbox", agent: worker.percentile(50)},
		}
		rows = append(first, rows[1:]...)
	}
	return rows
}

// criCallLog indexes containerd's CRI call lines by what they name.
type criCallLog struct {
	runStart, runEnd       map[string]time.Time // by sandbox name
	createStart, createEnd map[string]time.Time // by sandbox ID
	startStart, startEnd   map[string]time.Time // by container ID
}

func (l *criCallLog) forSample(s startSample) criCalls {
	c := criCalls{
		runStart:    l.runStart[s.pod],
		runEnd:      l.runEnd[s.pod],
		createStart: l.createStart[s.sandboxID],
		createEnd:   l.createEnd[s.sandboxID],
	}
	if len(s.containerIDs) > 0 {
		c.startStart, c.startEnd = l.startStart[s.containerIDs[0]], l.startEnd[s.containerIDs[0]]
	}
	return c
}

// readCRICalls reads containerd's log (logfmt: time="..." level=info msg="..."), keeping the
// first time of each call line:
//
//	RunPodSandbox for name:\"<name>\" uid:...                             [returns sandbox id ...]
//	CreateContainer within sandbox \"<sandbox id>\" for ...                [returns container id ...]
//	StartContainer for \"<container id>\"                                   [returns successfully]
func readCRICalls(path string) (*criCallLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l := &criCallLog{
		runStart: map[string]time.Time{}, runEnd: map[string]time.Time{},
		createStart: map[string]time.Time{}, createEnd: map[string]time.Time{},
		startStart: map[string]time.Time{}, startEnd: map[string]time.Time{},
	}
	keep := func(m map[string]time.Time, key string, t time.Time) {
		if _, ok := m[key]; !ok && key != "" {
			m[key] = t
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		t, ok := logfmtTime(line)
		if !ok {
			continue
		}
		switch {
		case strings.Contains(line, `msg="RunPodSandbox for `):
			name := sandboxName(line)
			if strings.Contains(line, "returns sandbox id") {
				keep(l.runEnd, name, t)
			} else if !strings.Contains(line, "failed") {
				keep(l.runStart, name, t)
			}
		case strings.Contains(line, `msg="CreateContainer within sandbox \"`):
			id := between(line, `within sandbox \"`, `\"`)
			if strings.Contains(line, "returns container id") {
				keep(l.createEnd, id, t)
			} else if !strings.Contains(line, "failed") {
				keep(l.createStart, id, t)
			}
		case strings.Contains(line, `msg="StartContainer for \"`):
			id := between(line, `StartContainer for \"`, `\"`)
			if strings.Contains(line, "returns successfully") {
				keep(l.startEnd, id, t)
			} else if !strings.Contains(line, "failed") {
				keep(l.startStart, id, t)
			}
		}
	}
	return l, sc.Err()
}

// sandboxName is the pod name in a RunPodSandbox line: containerd 2.x prints the metadata
// as protobuf text (name:\"x\" uid:...), 1.x as a Go struct (&PodSandboxMetadata{Name:x,...}).
func sandboxName(line string) string {
	if n := between(line, `for name:\"`, `\"`); n != "" {
		return n
	}
	return between(line, "PodSandboxMetadata{Name:", ",")
}

// logfmtTime parses the leading time="..." of a logfmt line.
func logfmtTime(line string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(line, `time="`)
	if !ok {
		return time.Time{}, false
	}
	ts, _, ok := strings.Cut(rest, `"`)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	return t, err == nil
}

// between is the text after the first start and before the next end, or "".
func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, ok := strings.Cut(after, end)
	if !ok {
		return ""
	}
	return v
}
