package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// bench holds what every part shares: the test bed, the options, the agents started (so they
// are all stopped at the end) and the report being filled.
type bench struct {
	tb     *bed
	rt     *cri.Client
	opts   *options
	agents []*agent
	report *report

	agentBin string // the copy of -agent that every part runs

	// flags reports which optional flags the agent binary has (from its --help), so parts
	// that need a flag still being written are skipped with a note instead of failing.
	flags map[string]bool
}

// Flags of the agent that some parts need.
const (
	flagRuntimeEvents  = "--runtime-events"
	flagBackoffInitial = "--restart-backoff-initial"
	flagBackoffMax     = "--restart-backoff-max"
)

func newBench(ctx context.Context, tb *bed, opts *options) (*bench, error) {
	b := &bench{tb: tb, rt: tb.cri, opts: opts, flags: map[string]bool{}, report: &report{}}

	// Run a copy: a `make build` during the run must not change the binary between parts.
	b.agentBin = filepath.Join(tb.dir, "bin", "nodeagent-under-test")
	sum, err := copyFile(opts.agent, b.agentBin)
	if err != nil {
		return nil, fmt.Errorf("copy the agent binary: %w", err)
	}

	var help bytes.Buffer
	cmd := exec.CommandContext(ctx, b.agentBin, "--help")
	cmd.Stdout, cmd.Stderr = &help, &help
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s --help: %v: %s", opts.agent, err, help.String())
	}
	for _, f := range []string{flagRuntimeEvents, flagBackoffInitial, flagBackoffMax} {
		b.flags[f] = strings.Contains(help.String(), f+" ")
	}
	out, err := exec.CommandContext(ctx, b.agentBin, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s version: %w", opts.agent, err)
	}
	ver, err := b.rt.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("runtime version: %w", err)
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	b.report.header = []string{
		fmt.Sprintf("%s, binary %s (sha256 %s)", strings.TrimSpace(string(out)), opts.agentArg, sum[:12]),
		fmt.Sprintf("runtime %s %s (CRI %s), %d CPUs, kernel %s, test bed %s",
			ver.RuntimeName, ver.RuntimeVersion, ver.RuntimeApiVersion, runtime.NumCPU(),
			strings.TrimSpace(string(kernel)), tb.dir),
	}
	return b, nil
}

// copyFile copies an executable and returns its sha256 in hex.
func copyFile(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hasFlags reports whether the agent has every one of flags.
func (b *bench) hasFlags(flags ...string) bool {
	for _, f := range flags {
		if !b.flags[f] {
			return false
		}
	}
	return true
}
