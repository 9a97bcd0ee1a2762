// Command chaos is the fault-injection run of issue 18: on its own test bed (index 11, in the
// temp dir) it drives one real agent through N cycles of pod manifests added, edited and
// removed, with kill -9 of the agent at a random moment of every cycle and a containerd
// restart every K cycles, then removes every manifest and counts what should not be there:
// duplicate sandboxes, unexpected restarts, leaked IP leases, mounts, pod and log
// directories, veths, network namespaces, nat chains and rules, runc containers and shims
// (package check says how each is looked at).
//
//	go run ./test/chaos -cycles 20 -seed 42      (make chaos runs it with CHAOS_CYCLES)
//
// The random choices come from -seed (printed; the current time when not given), so a run
// that found something can be replayed, give or take the timing of the machine. It exits 0
// only when every count is zero, 1 when one is not (the report says which) or the run could
// not be carried out, 2 on bad flags. Whatever happens, on Ctrl-C too, it stops its agent by
// PID and tears its test bed down (containerd and its shims, mounts, netns, the bridge and
// the test bed's nat rules), unless -keep leaves it up for inspection.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/chaos/check"
	"github.com/nodeagent/nodeagent/test/chaos/workload"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// The test bed this program owns. Other indexes belong to the e2e packages (test/e2e/chaos
// has 12), the bench (10) and the demo (15).
const (
	testbedIndex = 11
	testbedName  = "nodeagent-chaos"
	nodeName     = "chaos"
	// hostPort of the hostport pod: 32000 + 10 x index keeps test beds apart.
	hostPort = 32000 + 10*testbedIndex
)

type options struct {
	agent, delegate string // absolute paths
	cycles          int
	seed            int64
	killWindow      time.Duration
	containerdEvery int
	convergeTimeout time.Duration
	leakTimeout     time.Duration
	keep            bool
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, opts))
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.agent, "agent", "bin/nodeagent", "the nodeagent binary")
	fs.StringVar(&o.delegate, "delegate", "bin/nodeagent-cni", "the CNI delegate binary containerd runs")
	fs.IntVar(&o.cycles, "cycles", 20, "cycles of edits, kill -9 and restart")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the random choices (default: the current time; printed either way)")
	fs.DurationVar(&o.killWindow, "kill-window", 1500*time.Millisecond, "kill -9 comes at a random moment this long after a cycle's edits")
	fs.IntVar(&o.containerdEvery, "containerd-every", 10, "restart containerd on every n-th cycle (0: never; at least once when cycles >= n)")
	fs.DurationVar(&o.convergeTimeout, "converge-timeout", 2*time.Minute, "how long a cycle waits for the agent to converge before counting it as not converged")
	fs.DurationVar(&o.leakTimeout, "leak-timeout", time.Minute, "how long the final look waits for leaks to go")
	fs.BoolVar(&o.keep, "keep", false, "leave the test bed up at the end for inspection")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.cycles < 1 || o.containerdEvery < 0 || o.killWindow < 0 {
		return nil, fmt.Errorf("-cycles must be >= 1, -containerd-every >= 0 and -kill-window >= 0")
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano()
	}
	for _, p := range []*string{&o.agent, &o.delegate} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() {
			return nil, fmt.Errorf("%s: not a binary (run `make build` first)", *p)
		}
		*p = abs
	}
	return o, nil
}

// run brings the test bed up, runs the cycles, prints the report and tears everything down.
// It returns the process exit code.
func run(ctx context.Context, opts *options) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "chaos: needs root (it runs containerd, mounts and network namespaces)")
		return 1
	}
	began := time.Now()
	progress("seed %d, %d cycles, kill window %s, containerd restart every %d cycles", opts.seed, opts.cycles,
		opts.killWindow, opts.containerdEvery)
	// The test bed's CNI delegate is the one under test too.
	os.Setenv("NODEAGENT_CNI_BIN", opts.delegate)
	dir := filepath.Join(os.TempDir(), testbedName)
	// Outside the test bed, so they outlive its teardown for whoever reads the report.
	agentLog := filepath.Join(os.TempDir(), testbedName+"-agent.log")
	containerdLog := filepath.Join(os.TempDir(), testbedName+"-containerd.log")

	progress("bringing up the test bed in %s (index %d)", dir, testbedIndex)
	env, err := testbed.Up(ctx, dir, testbedIndex, os.Stderr)
	defer func() {
		if env != nil {
			_ = copyFile(env.Values["CONTAINERD_LOG"], containerdLog)
		}
		if opts.keep {
			progress("leaving the test bed up in %s; remove it with: hack/testbed.sh down %s", dir, dir)
			return
		}
		progress("tearing down the test bed in %s", dir)
		if err := testbed.Down(dir, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		}
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	client, err := cri.New(env.RuntimeEndpoint, cri.Options{CallTimeout: time.Minute})
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	defer client.Close()

	a, err := newAgent(opts.agent, env, filepath.Join(dir, "agent"), agentLog)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	// Before the test bed goes: the agent by its PID. Its pods go with the test bed.
	defer a.stop()
	bed, err := check.NewBed(env, nodeName, a.rootDir, a.logsDir, client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	if err := a.start(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	w := workload.New(workload.Config{
		ManifestDir:     a.manifestDir,
		NodeName:        nodeName,
		Image:           env.BusyboxImage,
		HostPort:        hostPort,
		Seed:            opts.seed,
		KillWindow:      opts.killWindow,
		ContainerdEvery: opts.containerdEvery,
		ConvergeTimeout: opts.convergeTimeout,
		Logf:            progress,
	})
	report, runErr := w.Run(ctx, &node{agent: a, dir: dir}, bed, workload.RunOptions{Cycles: opts.cycles, LeakTimeout: opts.leakTimeout})

	fmt.Printf("chaos: %d cycles, seed %d: %d kill -9 of the agent, %d containerd restarts, %s\n",
		opts.cycles, opts.seed, w.Kills, w.ContainerdRestarts, time.Since(began).Round(time.Second))
	report.Print(os.Stdout)
	fmt.Printf("agent log: %s; containerd log: %s\n", agentLog, containerdLog)
	code := 0
	if runErr != nil {
		fmt.Printf("FAIL: the run could not be carried out: %v\n", runErr)
		code = 1
	}
	if nz := report.NonZero(); len(nz) > 0 {
		fmt.Printf("FAIL: non-zero: %s\n", strings.Join(nz, ", "))
		code = 1
	} else if runErr == nil {
		fmt.Println("PASS: every count is zero")
	}
	return code
}

// node is the workload's view of this program's agent and test bed.
type node struct {
	agent *agent
	dir   string
}

func (n *node) KillAgent() error  { return n.agent.kill() }
func (n *node) StartAgent() error { return n.agent.start() }
func (n *node) RestartContainerd() error {
	return testbed.RestartContainerd(n.dir, io.Discard)
}
func (n *node) Pods() ([]v1.Pod, error) { return n.agent.pods() }

// progress tells the person waiting what is going on, on stderr so stdout is only the report.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[chaos %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}
