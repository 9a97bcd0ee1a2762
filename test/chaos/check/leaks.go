package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// live is the runtime's view at one moment: what may legitimately hold a lease, a veth, a
// netns, a nat rule, a runc container or a shim.
type live struct {
	ids   map[string]bool // every sandbox and container ID CRI lists, any state, any node
	ready map[string]bool // sandbox IDs that may hold network resources (see Bed.live)
	ips   map[string]bool // their pod IPs
	netns map[string]bool // their netns paths
	// nodeSbs are the sandboxes of the bed's node, any state.
	nodeSbs []*runtimeapi.PodSandbox
}

// live lists the runtime. The sandboxes that may hold network resources are the ready ones
// (of any node: the test bed's network is shared) and, whatever their state, those of the
// desired pods: a finished pod's sandbox is being stopped while a look between cycles runs,
// and the final look, with nothing desired, judges everything anyway.
func (b *Bed) live(ctx context.Context, desired map[string]bool) (*live, error) {
	sbs, err := b.CRI.ListPodSandbox(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	cs, err := b.CRI.ListContainers(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	l := &live{ids: map[string]bool{}, ready: map[string]bool{}, ips: map[string]bool{}, netns: map[string]bool{}}
	for _, c := range cs {
		l.ids[c.Id] = true
	}
	for _, sb := range sbs {
		l.ids[sb.Id] = true
		if sb.Labels[cri.LabelNodeName] == b.Node {
			l.nodeSbs = append(l.nodeSbs, sb)
		}
		ownDesired := sb.Labels[cri.LabelNodeName] == b.Node && desired[sb.GetMetadata().GetUid()]
		if sb.State != runtimeapi.PodSandboxState_SANDBOX_READY && !ownDesired {
			continue
		}
		l.ready[sb.Id] = true
		st, err := b.CRI.PodSandboxStatus(ctx, sb.Id, true)
		if err != nil {
			return nil, fmt.Errorf("status of sandbox %s: %w", sb.Id, err)
		}
		if n := st.GetStatus().GetNetwork(); n != nil {
			if n.Ip != "" {
				l.ips[n.Ip] = true
			}
			for _, ip := range n.AdditionalIps {
				l.ips[ip.Ip] = true
			}
		}
		if p := netnsPath(st.GetInfo()["info"]); p != "" {
			l.netns[p] = true
		}
	}
	return l, nil
}

// netnsPath reads the sandbox's network namespace path from containerd's verbose status:
// info.runtimeSpec.linux.namespaces[type=network].path.
func netnsPath(info string) string {
	var v struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if json.Unmarshal([]byte(info), &v) != nil {
		return ""
	}
	for _, ns := range v.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			return ns.Path
		}
	}
	return ""
}

// Leaks takes one look at the system and adds to r everything that no live sandbox,
// container or pod accounts for. desired is the set of pod UIDs the agent should be running
// (empty once every manifest is removed): their sandboxes, mounts and directories are not
// leaks. Call it on a quiet system (the agent converged): a pod being set up or torn down
// while it looks has, for a moment, a lease without a ready sandbox.
func (b *Bed) Leaks(ctx context.Context, desired map[string]bool, r *Report) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// runc and the shims before and again after CRI: what CRI lists must not count as
	// leaked because it was created between the looks, so only what both looks saw counts.
	runc1, err := b.runcContainers(ctx)
	if err != nil {
		return err
	}
	shims1, err := b.shimProcesses()
	if err != nil {
		return err
	}
	l, err := b.live(ctx, desired)
	if err != nil {
		return err
	}
	runc2, err := b.runcContainers(ctx)
	if err != nil {
		return err
	}
	shims2, err := b.shimProcesses()
	if err != nil {
		return err
	}
	var errs []error
	for _, sb := range l.nodeSbs {
		if uid := sb.GetMetadata().GetUid(); !desired[uid] {
			r.Add(SandboxesLeft, "sandbox %s of pod %s (UID %s), %s", short(sb.Id), sb.GetMetadata().GetName(), uid, sb.State)
		}
	}
	log := b.containerdLog()
	for id, where := range runc2 {
		if runc1[id] != "" && !l.ids[id] {
			if why := testbed.CancelledTaskCreate(log, id); why != "" {
				r.Add(ContainerdLeaks, "runc container %s (runc root %s); containerd logged: %s", id, where, why)
				continue
			}
			r.Add(RuncContainers, "%s (runc root %s)", id, where)
		}
	}
	for pid, id := range shims2 {
		if shims1[pid] == id && !l.ids[id] {
			if why := testbed.CancelledTaskCreate(log, id); why != "" {
				r.Add(ContainerdLeaks, "shim pid %d serving %s; containerd logged: %s", pid, id, why)
				continue
			}
			r.Add(Shims, "pid %d serving %s", pid, id)
		}
	}
	errs = append(errs,
		b.leases(l, r),
		b.mounts(desired, l, r),
		b.podDirs(desired, r),
		b.veths(l, r),
		b.nat(l, r),
	)
	return errors.Join(errs...)
}

// leases: host-local writes one file per address, named after it, holding
// "<container ID>\r\n<ifname>"; an address whose container is not a live sandbox is leaked.
func (b *Bed) leases(l *live, r *Report) error {
	entries, err := os.ReadDir(b.leaseDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lease dir: %w", err)
	}
	for _, e := range entries {
		if net.ParseIP(e.Name()) == nil {
			continue // last_reserved_ip.0, lock
		}
		data, err := os.ReadFile(filepath.Join(b.leaseDir(), e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // released while we looked
		}
		if err != nil {
			return fmt.Errorf("lease %s: %w", e.Name(), err)
		}
		id, ifname := leaseOwner(data)
		if !l.ready[id] {
			r.Add(Leases, "%s held by %s/%s, not a live sandbox", e.Name(), id, ifname)
		}
	}
	return nil
}

func leaseOwner(data []byte) (id, ifname string) {
	s := string(data)
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\r' && s[i+1] == '\n' {
			return s[:i], s[i+2:]
		}
	}
	return s, ""
}

// podDirs: <root>/pods/<uid> and <logs>/<namespace>_<name>_<uid> of pods not desired.
func (b *Bed) podDirs(desired map[string]bool, r *Report) error {
	entries, err := os.ReadDir(filepath.Join(b.RootDir, "pods"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pod dirs: %w", err)
	}
	for _, e := range entries {
		if !desired[e.Name()] {
			r.Add(PodDirs, "%s", filepath.Join(b.RootDir, "pods", e.Name()))
		}
	}
	entries, err = os.ReadDir(b.PodLogsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pod log dirs: %w", err)
	}
	for _, e := range entries {
		if !desired[logDirUID(e.Name())] {
			r.Add(PodLogDirs, "%s", filepath.Join(b.PodLogsDir, e.Name()))
		}
	}
	return nil
}

// logDirUID is the UID at the end of the kubelet's <namespace>_<name>_<uid>.
func logDirUID(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '_' {
			return name[i+1:]
		}
	}
	return name
}

// WaitNoLeaks calls Leaks every second until it finds nothing or timeout passes, and
// returns the last look: leaks the agent cleans up on its own a little later (a GC, a
// teardown finishing) are not leaks, what is still there at the deadline is.
func (b *Bed) WaitNoLeaks(ctx context.Context, desired map[string]bool, timeout time.Duration) (*Report, error) {
	deadline := time.Now().Add(timeout)
	for {
		r := NewReport()
		err := b.Leaks(ctx, desired, r)
		if err == nil && len(r.NonZero()) == 0 {
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return r, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
