package check

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Kind is one thing a chaos run counts. Every count is expected to be zero.
type Kind string

// The kinds, in the order a Report prints them.
const (
	DuplicateSandboxes Kind = "duplicate sandboxes"
	UnexpectedRestarts Kind = "unexpected restarts"
	// StartsCutOff are containers replaced because the kill cut their StartContainer short:
	// containerd cancels the start when its caller goes and marks the container exited with
	// StartError, never having run, so the agent must create the next attempt. The restart
	// count shows it, but nothing that ran was restarted: reported, not a failure.
	StartsCutOff Kind = "starts cut off by a kill (info)"
	// ExitsLost are containers that exited while containerd was down and whose exit code
	// containerd lost (it reports 255): the agent reports what the runtime says, so a
	// restartPolicy Never pod that succeeded shows Failed. Reported, not a failure.
	ExitsLost      Kind = "exit codes containerd lost (info)"
	Unconverged    Kind = "cycles that did not converge"
	SandboxesLeft  Kind = "sandboxes left in CRI"
	Leases         Kind = "leaked IP leases"
	Mounts         Kind = "mounts under the root dir"
	PodDirs        Kind = "pod directories"
	PodLogDirs     Kind = "pod log directories"
	Veths          Kind = "veths on the bridge"
	NetNS          Kind = "network namespaces"
	NATChains      Kind = "iptables nat chains"
	NATRules       Kind = "iptables nat rules"
	RuncContainers Kind = "runc containers CRI does not list"
	Shims          Kind = "shims CRI does not list"
	// ContainerdLeaks are runc containers and shims CRI does not list that containerd left
	// after a task create the kill cancelled (CancelledTaskCreate): containerd's bug, which
	// the agent cannot avoid on kill -9. Reported, not a failure.
	ContainerdLeaks Kind = "runc containers and shims containerd leaked after a cancelled task create (info)"
)

// Kinds is every Kind in print order.
var Kinds = []Kind{
	DuplicateSandboxes, UnexpectedRestarts, StartsCutOff, ExitsLost, Unconverged, SandboxesLeft, Leases, Mounts, PodDirs,
	PodLogDirs, Veths, NetNS, NATChains, NATRules, RuncContainers, Shims, ContainerdLeaks,
}

// Report holds what was found, with one line of detail per finding. It is safe for
// concurrent use.
type Report struct {
	mu    sync.Mutex
	items map[Kind][]finding // guarded by mu
}

// finding is n items of one kind that one line explains (a container restarted n times).
type finding struct {
	n      int
	detail string
}

// NewReport returns an empty report.
func NewReport() *Report { return &Report{items: map[Kind][]finding{}} }

// Add records one item of kind k; the detail says which and why, for the person reading.
func (r *Report) Add(k Kind, format string, args ...any) { r.AddN(k, 1, format, args...) }

// AddN records n items of kind k explained by one line of detail.
func (r *Report) AddN(k Kind, n int, format string, args ...any) {
	if n <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items[k] = append(r.items[k], finding{n: n, detail: fmt.Sprintf(format, args...)})
}

// Count is how many items of kind k were recorded.
func (r *Report) Count(k Kind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count(k)
}

func (r *Report) count(k Kind) int {
	n := 0
	for _, f := range r.items[k] {
		n += f.n
	}
	return n
}

// informational kinds are reported but are no failure.
var informational = map[Kind]bool{StartsCutOff: true, ExitsLost: true, ContainerdLeaks: true}

// NonZero lists the failing kinds with at least one item, in print order, as "kind (n)".
func (r *Report) NonZero() []string {
	var out []string
	for _, k := range Kinds {
		if n := r.Count(k); n > 0 && !informational[k] {
			out = append(out, fmt.Sprintf("%s (%d)", k, n))
		}
	}
	return out
}

// Merge adds every item of other to r.
func (r *Report) Merge(other *Report) {
	other.mu.Lock()
	items := make(map[Kind][]finding, len(other.items))
	for k, v := range other.items {
		items[k] = append([]finding(nil), v...)
	}
	other.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range items {
		r.items[k] = append(r.items[k], v...)
	}
}

// Print writes one line per kind with its count, then the details of the non-zero ones.
func (r *Report) Print(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range Kinds {
		fmt.Fprintf(w, "  %-36s %d\n", k, r.count(k))
	}
	r.details(w)
}

// Details is the details of the non-zero kinds only.
func (r *Report) Details() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	r.details(&b)
	return b.String()
}

func (r *Report) details(w io.Writer) {
	for _, k := range Kinds {
		if len(r.items[k]) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", k)
		var lines []string
		for _, f := range r.items[k] {
			l := f.detail
			if f.n > 1 {
				l = fmt.Sprintf("(%d) %s", f.n, l)
			}
			lines = append(lines, strings.ReplaceAll(l, "\n", "\n    "))
		}
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Fprintf(w, "  - %s\n", l)
		}
	}
}

// String is Print into a string.
func (r *Report) String() string {
	var b strings.Builder
	r.Print(&b)
	return b.String()
}
