// Command bench measures nodeagent on a private containerd test bed and prints one table:
// pod start against a direct-CRI floor, CNI ADD/DEL through the delegate against libcni
// direct, container exit detection and restart for each
// runtime event path, and the agent's memory and CPU with 0, 50 and 100 pods.
//
//	go run ./test/bench -agent bin/nodeagent      (what `make bench` runs)
//
// It is a measurement, not a test: targets are printed next to the measured values with a
// pass or MISS mark, and the exit code is 0 whatever they say. It is non-zero only when
// something could not be measured (the test bed did not come up, the agent died, a pod never
// ran). The test bed (index 10, in the temp dir) is always torn down at the end, on error and
// on Ctrl-C too, unless -keep asks to leave it up for inspection.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The test bed this program owns. Other indexes belong to the e2e packages and to people.
const (
	testbedIndex = 10
	testbedName  = "nodeagent-bench"
)

type options struct {
	agent     string // absolute
	delegate  string // absolute
	agentArg  string // as given, for the report
	pods      int
	exits     int
	footprint []int
	idle      time.Duration
	probePods int
	probeWin  time.Duration
	keep      bool
	only      map[string]bool // parts to run; empty runs all
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, opts))
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var footprint string
	fs.StringVar(&o.agent, "agent", "bin/nodeagent", "the nodeagent binary to measure")
	fs.StringVar(&o.delegate, "delegate", "bin/nodeagent-cni", "the CNI delegate binary containerd runs")
	fs.IntVar(&o.pods, "pods", 20, "pod start samples for the agent, and as many for the floor")
	fs.IntVar(&o.exits, "exits", 10, "crashing pods per runtime event path (one exit and one first restart each)")
	fs.StringVar(&footprint, "footprint", "0,50,100", "pod counts at which to measure the agent's RSS and CPU")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "idle window of each footprint measurement")
	fs.IntVar(&o.probePods, "probe-pods", 50, "pods with a 1 s HTTP readiness probe for the probe CPU measurement (0 skips it)")
	fs.DurationVar(&o.probeWin, "probe-window", 60*time.Second, "window of the probe CPU measurement")
	fs.BoolVar(&o.keep, "keep", false, "leave the test bed up at the end for inspection")
	var only string
	fs.StringVar(&only, "only", "", "comma-separated parts to run (pod-start, cni, exits, footprint, probes); default all")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.only = map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if !slices.Contains(partNames, p) {
				return nil, fmt.Errorf("-only: unknown part %q (parts: %s)", p, strings.Join(partNames, ", "))
			}
			o.only[p] = true
		}
	}
	if o.pods < 1 || o.exits < 0 || o.idle <= 0 {
		return nil, fmt.Errorf("-pods must be >= 1, -exits >= 0 and -idle > 0")
	}
	prev := -1
	for _, f := range strings.Split(footprint, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n <= prev {
			return nil, fmt.Errorf("-footprint: want increasing pod counts like 0,50,100, got %q", footprint)
		}
		o.footprint, prev = append(o.footprint, n), n
	}
	abs, err := filepath.Abs(o.agent)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() {
		return nil, fmt.Errorf("-agent %s: not a binary (run `make build` first)", o.agent)
	}
	o.agentArg, o.agent = o.agent, abs
	if o.delegate, err = filepath.Abs(o.delegate); err != nil {
		return nil, err
	}
	if st, err := os.Stat(o.delegate); err != nil || st.IsDir() {
		return nil, fmt.Errorf("-delegate %s: not a binary (run `make build` first)", o.delegate)
	}
	return o, nil
}

// partNames are the parts of the run, in order; -only picks some.
var partNames = []string{"pod-start", "cni", "exits", "footprint", "probes"}

// run brings the test bed up, runs every part, prints the table and tears everything down.
// It returns the process exit code.
func run(ctx context.Context, opts *options) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (it runs containerd, mounts and network namespaces)")
		return 1
	}
	began := time.Now()
	// The test bed's CNI delegate is the one under test too.
	os.Setenv("NODEAGENT_CNI_BIN", opts.delegate)
	tb, err := upTestbed(ctx, filepath.Join(os.TempDir(), testbedName), testbedIndex)
	if tb != nil {
		defer tb.down(opts.keep)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	defer tb.close()

	b, err := newBench(ctx, tb, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	defer b.stopAgents()

	parts := []struct {
		name string
		run  func(context.Context) error
	}{
		{"pod-start", b.podStart},
		{"cni", b.cniLatency},
		{"exits", b.exitDetection},
		{"footprint", b.footprint},
		{"probes", b.probeLoad},
	}
	code := 0
	for _, p := range parts {
		if ctx.Err() != nil {
			break
		}
		if len(opts.only) > 0 && !opts.only[p.name] {
			continue
		}
		progress("== %s", p.name)
		if err := p.run(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", p.name, err)
			b.report.failed(p.name, err)
			code = 1
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bench: interrupted; tearing down")
		code = 1
	}
	b.report.duration = time.Since(began)
	b.report.print(os.Stdout)
	return code
}

// progress tells the person waiting what is going on, on stderr so stdout is only the table.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
