package workload

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/test/chaos/check"
)

// RunOptions are the knobs of Run; zero durations take the documented defaults.
type RunOptions struct {
	Cycles int
	// SampleEvery paces the observer's CRI samples (default 250 ms).
	SampleEvery time.Duration
	// LeakTimeout bounds the final wait for leaks to go (default 60 s).
	LeakTimeout time.Duration
}

// Run is a whole chaos run: opts.Cycles cycles with the observer sampling throughout, then
// every manifest removed, a bounded wait for the agent to converge on no pods, and a bounded
// wait for the leak counts to reach zero. The report holds everything found; every count in
// it is expected to be zero. The error is a failure to carry the run out (the agent did not
// start, ctx ended), with the report of what was seen until then.
func (w *Workload) Run(ctx context.Context, node Node, bed *check.Bed, opts RunOptions) (*check.Report, error) {
	if opts.SampleEvery <= 0 {
		opts.SampleEvery = 250 * time.Millisecond
	}
	if opts.LeakTimeout <= 0 {
		opts.LeakTimeout = time.Minute
	}
	report := check.NewReport()
	obs := check.NewObserver(bed)
	obsCtx, stopObs := context.WithCancel(ctx)
	obsDone := make(chan struct{})
	go func() { defer close(obsDone); obs.Run(obsCtx, opts.SampleEvery) }()
	finish := func() {
		stopObs()
		<-obsDone
		_ = obs.Sample(ctx) // the last word, after everything settled
		obs.Report(report)
		ok, failed := obs.Samples()
		w.cfg.Logf("observer: %d CRI samples, %d unanswered (containerd restarting)", ok, failed)
	}

	for i := 0; i < opts.Cycles; i++ {
		res, err := w.Cycle(ctx, node, bed, i)
		if err != nil {
			finish()
			return report, fmt.Errorf("cycle %d: %w", i+1, err)
		}
		if !res.Converged {
			report.Add(check.Unconverged, "cycle %d: %s", i+1, res.Detail)
			continue
		}
		for _, l := range res.Lost {
			if !w.lost[l] {
				w.lost[l] = true
				report.Add(check.ExitsLost, "%s", l)
			}
		}
		// A look between cycles says when a leak appeared; only the final look counts, since
		// the agent may still clean up (its CNI GC runs at every start).
		seen := check.NewReport()
		if err := bed.Leaks(ctx, res.Desired, seen); err != nil {
			w.cfg.Logf("cycle %d: leak look failed: %v", i+1, err)
		} else if nz := seen.NonZero(); len(nz) > 0 {
			w.cfg.Logf("cycle %d: seen after convergence (the final look decides): %s\n%s", i+1, strings.Join(nz, ", "), seen.Details())
		}
	}

	res, err := w.RemoveAll(ctx, node, bed)
	if err != nil {
		finish()
		return report, fmt.Errorf("removing every manifest: %w", err)
	}
	if !res.Converged {
		report.Add(check.Unconverged, "after removing every manifest: %s", res.Detail)
	}
	w.cfg.Logf("every manifest removed; converged=%v in %s", res.Converged, res.Took.Round(100*time.Millisecond))
	finish()

	start := time.Now()
	leaks, err := bed.WaitNoLeaks(ctx, map[string]bool{}, opts.LeakTimeout)
	report.Merge(leaks)
	if err != nil {
		return report, fmt.Errorf("final leak look: %w", err)
	}
	w.cfg.Logf("final leak look done in %s", time.Since(start).Round(100*time.Millisecond))
	return report, nil
}
