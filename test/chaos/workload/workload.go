package workload

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/chaos/check"
)

// Node is what the workload does to the machine besides writing manifests. The chaos program
// implements it over its own processes, the e2e test over the framework's agent.
type Node interface {
	// KillAgent sends SIGKILL to the agent and returns once the process is gone.
	KillAgent() error
	// StartAgent starts the agent again and returns once /healthz answers.
	StartAgent() error
	// RestartContainerd stops the test bed's containerd and starts it on the same state.
	RestartContainerd() error
	// Pods is the agent's /pods.
	Pods() ([]v1.Pod, error)
}

// Config is a workload's setup; zero durations take the documented defaults.
type Config struct {
	ManifestDir string
	NodeName    string // static pods are named <manifest name>-<node name>
	Image       string // a busybox image present in containerd (never pulled)
	HostPort    int    // the hostport pod's port, unique to the test bed
	Seed        int64
	// KillWindow: kill -9 comes at a uniformly random moment this long after the edits
	// (default 1.5 s: a few pods' sandboxes, CNI ADDs and starts, or their termination).
	KillWindow time.Duration
	// ContainerdEvery restarts containerd, at a random moment of the same window, on cycles
	// n-1, 2n-1, ... (0: never).
	ContainerdEvery int
	// ConvergeTimeout bounds the wait for the agent to converge (default 2 min).
	ConvergeTimeout time.Duration
	// Logf tells the person waiting what happens; nil is silent.
	Logf func(format string, args ...any)
}

// Workload drives one agent through cycles. Not safe for concurrent use.
type Workload struct {
	cfg     Config
	rnd     *rand.Rand
	gen     int             // the last generation written
	present map[string]int  // manifest name -> the generation it holds
	lost    map[string]bool // exits containerd lost, already reported
	// Kills and ContainerdRestarts count what the run did, for its summary.
	Kills, ContainerdRestarts int
}

// New returns a workload with no manifest written yet.
func New(cfg Config) *Workload {
	if cfg.KillWindow <= 0 {
		cfg.KillWindow = 1500 * time.Millisecond
	}
	if cfg.ConvergeTimeout <= 0 {
		cfg.ConvergeTimeout = 2 * time.Minute
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &Workload{cfg: cfg, rnd: rand.New(rand.NewSource(cfg.Seed)), present: map[string]int{}, lost: map[string]bool{}}
}

// Result is where a cycle left the agent.
type Result struct {
	Converged bool
	// Desired is the UIDs of the pods the manifests define, as the agent runs them (only
	// when converged).
	Desired map[string]bool
	// Lost describes the pods that are done only because containerd lost an exit code.
	Lost []string
	// Detail says what was still wrong when the wait gave up.
	Detail string
	Took   time.Duration // from the agent's start to convergence, or to giving up
}

// Cycle runs cycle i (from 0). The error is a failure to act (a manifest not written, the
// agent not starting); a cycle that does not converge is a Result, so the run carries on.
func (w *Workload) Cycle(ctx context.Context, node Node, bed *check.Bed, i int) (Result, error) {
	var story []string
	ops, err := w.edit()
	if err != nil {
		return Result{}, err
	}
	story = append(story, ops)
	killAt := w.duration(w.cfg.KillWindow)
	start := time.Now()
	if w.cfg.ContainerdEvery > 0 && (i+1)%w.cfg.ContainerdEvery == 0 {
		at := w.duration(killAt)
		if err := sleep(ctx, at); err != nil {
			return Result{}, err
		}
		if err := node.RestartContainerd(); err != nil {
			return Result{}, fmt.Errorf("restart containerd: %w", err)
		}
		w.ContainerdRestarts++
		story = append(story, fmt.Sprintf("containerd restarted at +%s", at.Round(time.Millisecond)))
	}
	if err := sleep(ctx, killAt-time.Since(start)); err != nil {
		return Result{}, err
	}
	if err := node.KillAgent(); err != nil {
		return Result{}, fmt.Errorf("kill -9 the agent: %w", err)
	}
	w.Kills++
	story = append(story, fmt.Sprintf("kill -9 at +%s", time.Since(start).Round(time.Millisecond)))
	// Sometimes the manifests change while the agent is down: it must pick that up at start.
	if w.rnd.Intn(3) == 0 {
		ops, err := w.edit()
		if err != nil {
			return Result{}, err
		}
		story = append(story, "while down: "+ops)
	}
	if err := node.StartAgent(); err != nil {
		return Result{}, fmt.Errorf("start the agent: %w", err)
	}
	res := w.WaitConverged(ctx, node, bed)
	state := "converged"
	if !res.Converged {
		state = "NOT converged"
	}
	w.cfg.Logf("cycle %d: %s; %s in %s", i+1, strings.Join(story, "; "), state, res.Took.Round(100*time.Millisecond))
	return res, ctx.Err()
}

// RemoveAll removes every manifest and waits for the agent to converge on no pods.
func (w *Workload) RemoveAll(ctx context.Context, node Node, bed *check.Bed) (Result, error) {
	for name := range w.present {
		if err := w.remove(name); err != nil {
			return Result{}, err
		}
	}
	res := w.WaitConverged(ctx, node, bed)
	return res, ctx.Err()
}

// edit changes a few manifests at random (at least one) and says what it did.
func (w *Workload) edit() (string, error) {
	var ops []string
	for len(ops) == 0 {
		for _, k := range kinds {
			_, there := w.present[k.name]
			r := w.rnd.Float64()
			var op string
			switch {
			case !there && r < 0.7:
				op = "add"
			case there && r < 0.25:
				op = "edit"
			case there && r < 0.45:
				op = "remove"
			default:
				continue
			}
			var err error
			if op == "remove" {
				err = w.remove(k.name)
			} else {
				err = w.write(k)
			}
			if err != nil {
				return "", err
			}
			ops = append(ops, op+" "+k.name)
		}
	}
	return strings.Join(ops, ", "), nil
}

// write puts kind k's next generation in place the way a deploy tool does: written under a
// name the agent ignores, then renamed in.
func (w *Workload) write(k podKind) error {
	w.gen++
	file := filepath.Join(w.cfg.ManifestDir, k.name+".yaml")
	tmp := filepath.Join(w.cfg.ManifestDir, "."+k.name+".yaml.tmp")
	if err := os.WriteFile(tmp, []byte(k.manifest(w.gen, w.cfg.Image, w.cfg.HostPort)), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	w.present[k.name] = w.gen
	return nil
}

func (w *Workload) remove(name string) error {
	if err := os.Remove(filepath.Join(w.cfg.ManifestDir, name+".yaml")); err != nil {
		return err
	}
	delete(w.present, name)
	return nil
}

// duration is uniformly random in [0, max).
func (w *Workload) duration(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(w.rnd.Int63n(int64(max)))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
