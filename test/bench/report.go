package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Targets. A measured value is marked pass when it is at or under its target.
const (
	targetStartRatio = 1.10
	targetDetect     = 50 * time.Millisecond
	targetRestart    = 150 * time.Millisecond
	targetPods       = 100      // the footprint targets hold from this many pods up
	targetRSS        = 40 << 20 // bytes
	targetCPU        = 1.0      // percent of one core
)

// report collects the rows of the table as the parts produce them.
type report struct {
	header    []string
	duration  time.Duration
	latency   []latencyRow
	breakdown []breakdownRow
	footprint []footprintRow
	notes     []string
	failures  []string
}

type latencyRow struct {
	name     string
	n        int
	p50, p90 string
	target   string
	result   string // "pass", "MISS" or ""
}

type breakdownRow struct {
	name         string
	agent, floor time.Duration
	hasFloor     bool
}

type footprintRow struct {
	label    string // what ran during the window; default "<pods> pods running"
	pods     int
	rss, hwm uint64
	anon     uint64 // RssAnon
	threads  uint64
	cpu      float64 // percent of one core over window
	window   time.Duration
	target   string
	result   string
}

func mark(ok bool) string {
	if ok {
		return "pass"
	}
	return "MISS"
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) failed(part string, err error) {
	r.failures = append(r.failures, fmt.Sprintf("%s: not measured: %v", part, err))
}

func (r *report) podStart(agentS, floorS []startSample) {
	var a, f samples
	for _, s := range agentS {
		a = append(a, s.latency())
	}
	for _, s := range floorS {
		f = append(f, s.latency())
	}
	ratio := float64(a.percentile(50)) / float64(f.percentile(50))
	r.latency = append(r.latency,
		latencyRow{name: "pod start, agent (rename -> last container StartedAt)", n: len(a), p50: ms(a.percentile(50)), p90: ms(a.percentile(90))},
		latencyRow{name: "pod start, floor (RunPodSandbox -> StartedAt, direct CRI)", n: len(f), p50: ms(f.percentile(50)), p90: ms(f.percentile(90))},
		latencyRow{name: "pod start, agent/floor ratio of p50s", p50: fmt.Sprintf("%.2f", ratio),
			target: fmt.Sprintf("<= %.2f", targetStartRatio), result: mark(ratio <= targetStartRatio)},
	)
}

// exits adds the rows of one runtime event path. missed counts exits the agent logged no
// runtime event for; coarse says its log times have whole seconds only.
func (r *report) exits(mode string, detect, restart samples, missed int, coarse bool) {
	row := latencyRow{name: fmt.Sprintf("exit -> agent notified (%s events)", mode), n: len(detect),
		target: "<= " + ms(targetDetect)}
	switch {
	case coarse:
		row.p50, row.p90, row.result = "n/a", "n/a", "n/a"
		r.note("%s events: the agent's log times have whole seconds only (want RFC3339Nano); detection not timed", mode)
	case len(detect) == 0:
		row.p50, row.p90, row.result = "n/a", "n/a", "MISS"
	default:
		row.p50, row.p90 = ms(detect.percentile(50)), ms(detect.percentile(90))
		row.result = mark(detect.percentile(50) <= targetDetect)
	}
	if missed > 0 {
		row.name += fmt.Sprintf(" [%d exits without a runtime event line]", missed)
	}
	r.latency = append(r.latency, row,
		latencyRow{name: fmt.Sprintf("exit -> first restart running (%s events)", mode), n: len(restart),
			p50: ms(restart.percentile(50)), p90: ms(restart.percentile(90)),
			target: "<= " + ms(targetRestart), result: mark(restart.percentile(50) <= targetRestart)})
}

// cni adds the rows of one CNI command: direct libcni, through the delegate, and the
// difference of their p50s against the target.
func (r *report) cni(command string, direct, delegate samples) {
	over := delegate.percentile(50) - direct.percentile(50)
	r.latency = append(r.latency,
		latencyRow{name: "CNI " + command + ", libcni direct", n: len(direct), p50: ms(direct.percentile(50)), p90: ms(direct.percentile(90))},
		latencyRow{name: "CNI " + command + ", through the delegate", n: len(delegate), p50: ms(delegate.percentile(50)), p90: ms(delegate.percentile(90))},
		latencyRow{name: "CNI " + command + ", delegate overhead (p50 difference)", p50: ms(over),
			target: "<= " + ms(targetDelegateOverhead), result: mark(over <= targetDelegateOverhead)},
	)
}

func (r *report) skipped(name, why string) {
	r.latency = append(r.latency, latencyRow{name: name, p50: "skipped", result: "n/a"})
	r.note("%s: skipped: %s", name, why)
}

func (r *report) print(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "nodeagent bench")
	for _, h := range r.header {
		fmt.Fprintln(w, "  "+h)
	}
	fmt.Fprintf(w, "  run took %s\n", r.duration.Round(time.Second))

	if len(r.latency) > 0 {
		t := &table{}
		t.add("LATENCY", "n", "p50", "p90", "target", "result")
		for _, row := range r.latency {
			n := ""
			if row.n > 0 {
				n = fmt.Sprint(row.n)
			}
			t.add(row.name, n, row.p50, row.p90, row.target, row.result)
		}
		fmt.Fprintln(w)
		t.write(w)
	}

	if len(r.breakdown) > 0 {
		t := &table{}
		t.add("POD START BY STEP (p50 of each step, from containerd's log)", "agent", "floor", "agent-floor")
		for _, row := range r.breakdown {
			if row.hasFloor {
				t.add(row.name, ms(row.agent), ms(row.floor), ms(row.agent-row.floor))
			} else {
				t.add(row.name, ms(row.agent), "", "")
			}
		}
		fmt.Fprintln(w)
		t.write(w)
	}

	if len(r.footprint) > 0 {
		t := &table{}
		t.add("FOOTPRINT (agent process)", "RSS", "peak RSS", "private", "threads", "CPU", "window", "target", "result")
		for _, row := range r.footprint {
			rss, hwm, anon, threads := mib(row.rss), mib(row.hwm), mib(row.anon), fmt.Sprint(row.threads)
			if row.rss == 0 { // a floor row: not the agent's memory
				rss, hwm, anon, threads = "-", "-", "-", "-"
			}
			t.add(row.title(), rss, hwm, anon, threads,
				fmt.Sprintf("%.2f %% of a core", row.cpu), row.window.Round(100*time.Millisecond).String(),
				row.target, row.result)
		}
		fmt.Fprintln(w)
		t.write(w)
	}

	if len(r.notes)+len(r.failures) > 0 {
		fmt.Fprintln(w)
		for _, f := range r.failures {
			fmt.Fprintln(w, "FAILED  "+f)
		}
		for _, n := range r.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

// table prints rows with the first column aligned left (names) and the others right
// (numbers), two spaces apart.
type table struct{ rows [][]string }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range t.rows {
		var sb strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i == 0 {
				sb.WriteString(c + pad)
			} else {
				sb.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
}

func (r footprintRow) title() string {
	if r.label != "" {
		return r.label
	}
	return fmt.Sprintf("%d pods running", r.pods)
}
