package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/nodeagent/nodeagent/pkg/network"
)

// Target for the delegate's cost: what it adds to a CNI ADD or DEL over running the same
// list with libcni directly.
const targetDelegateOverhead = 5 * time.Millisecond

// cniSamples is how many ADD+DEL pairs each path gets.
const cniSamples = 60

// cniLatency measures CNI ADD and DEL the way containerd makes them (libcni running the
// test bed's delegate conflist, so: exec of the nodeagent binary, the socket, the agent, its
// libcni and the real plugins) against the floor: libcni running the agent's own node list
// in this process. Both attach a fresh network namespace each time; the samples interleave
// (direct, delegate, delegate, direct, ...) so machine noise hits both alike. DEL times vary
// by ±10 ms (iptables under its lock), hence the many samples.
func (b *bench) cniLatency(ctx context.Context) error {
	a, err := b.startAgent(ctx, "bench-cni")
	if err != nil {
		return err
	}
	defer a.stop()

	stateDir := b.tb.env["CNI_STATE_DIR"]
	node, err := network.LoadSavedNetwork(stateDir)
	if err != nil {
		return fmt.Errorf("the agent's saved network: %w", err)
	}
	direct, err := network.NewRunner(node, network.CacheDir(stateDir), network.RunnerOptions{LockFile: network.LockFile(stateDir)})
	if err != nil {
		return err
	}

	confFile := filepath.Join(b.tb.env["CNI_CONF_DIR"], "10-nodeagent.conflist")
	delegateList, err := libcni.ConfListFromFile(confFile)
	if err != nil {
		return fmt.Errorf("the test bed's delegate conflist: %w", err)
	}
	// containerd's view: its own cache dir, the delegate link first in its plugin path.
	outerCache := filepath.Join(b.tb.dir, "bench-cni-outer-cache")
	viaDelegate := libcni.NewCNIConfigWithCacheDir(
		[]string{filepath.Join(b.tb.dir, "cni", "bin"), b.tb.env["CNI_BIN_DIR"]}, outerCache, nil)

	var addD, delD, addX, delX samples
	// Each path attaches a fresh netns, ADDs, then DELs; a failure is fatal to the part.
	directPair := func(n int) (time.Duration, time.Duration, error) {
		ns, err := newNetns(ctx, fmt.Sprintf("nabench-d%d", n))
		if err != nil {
			return 0, 0, err
		}
		defer ns.remove()
		att := network.Attachment{ContainerID: fmt.Sprintf("bench-direct-%d", n), NetNS: ns.path, IfName: "eth0",
			PodName: "direct", PodNamespace: "bench", PodUID: "bench-direct"}
		t0 := time.Now()
		if _, err := direct.Add(ctx, att); err != nil {
			return 0, 0, fmt.Errorf("direct libcni: %w", err)
		}
		add := time.Since(t0)
		t0 = time.Now()
		if err := direct.Del(ctx, att); err != nil {
			return 0, 0, fmt.Errorf("direct libcni: %w", err)
		}
		return add, time.Since(t0), nil
	}
	delegatePair := func(n int) (time.Duration, time.Duration, error) {
		ns, err := newNetns(ctx, fmt.Sprintf("nabench-x%d", n))
		if err != nil {
			return 0, 0, err
		}
		defer ns.remove()
		rt := &libcni.RuntimeConf{
			ContainerID: fmt.Sprintf("bench-delegate-%d", n), NetNS: ns.path, IfName: "eth0",
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "bench"}, {"K8S_POD_NAME", "delegate"}, {"K8S_POD_UID", "bench-delegate"}},
		}
		t0 := time.Now()
		if _, err := viaDelegate.AddNetworkList(ctx, delegateList, rt); err != nil {
			return 0, 0, fmt.Errorf("through the delegate: %w%s", err, a.tail(10))
		}
		add := time.Since(t0)
		t0 = time.Now()
		if err := viaDelegate.DelNetworkList(ctx, delegateList, rt); err != nil {
			return 0, 0, fmt.Errorf("through the delegate: %w%s", err, a.tail(10))
		}
		return add, time.Since(t0), nil
	}
	for i := -1; i < cniSamples; i++ {
		// Alternate which path goes first, so a drift in the machine's load favours neither.
		first, second := directPair, delegatePair
		if i%2 != 0 {
			first, second = delegatePair, directPair
		}
		a1, d1, err := first(i + 1)
		if err != nil {
			return err
		}
		a2, d2, err := second(i + 1)
		if err != nil {
			return err
		}
		if i < 0 {
			progress("CNI warm-up pairs done (not counted)")
			continue
		}
		if i%2 != 0 {
			a1, d1, a2, d2 = a2, d2, a1, d1
		}
		addD, delD, addX, delX = append(addD, a1), append(delD, d1), append(addX, a2), append(delX, d2)
	}
	b.report.cni("ADD", addD, addX)
	b.report.cni("DEL", delD, delX)
	b.report.note("CNI: %d ADD+DEL pairs per path on fresh netns, interleaved, the first path alternating; direct = libcni running the agent's node list in-process, "+
		"delegate = libcni running containerd's conflist (exec nodeagent-cni -> socket -> agent -> the same list)", cniSamples)
	return nil
}

// netns is a named network namespace made with ip netns, as a pod sandbox would have.
type netns struct{ name, path string }

func newNetns(ctx context.Context, name string) (*netns, error) {
	_ = exec.CommandContext(ctx, "ip", "netns", "delete", name).Run() // a leftover of an interrupted run
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	return &netns{name: name, path: filepath.Join("/var/run/netns", name)}, nil
}

func (n *netns) remove() {
	if out, err := exec.Command("ip", "netns", "delete", n.name).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: ip netns delete %s: %v: %s\n", n.name, err, out)
	}
}
