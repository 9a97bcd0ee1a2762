package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// Pressure thresholds. Memory and disk are the kubelet's default hard eviction thresholds
// (memory.available<100Mi, nodefs.available<10%, nodefs.inodesFree<5%), so a node reports
// pressure where a kubelet would start evicting. The kubelet has no default PID threshold;
// 90% of the kernel's limit leaves room for the system to act before fork() fails.
const (
	memoryAvailableMin  = 100 << 20 // bytes
	diskAvailableMinPct = 10
	inodesFreeMinPct    = 5
	processesMaxUsedPct = 90
)

// runtimeCallTimeout bounds each question to the runtime, leaving the rest of a status
// step's time (nodeRequestTimeout) to the API server: a hung runtime makes the node NotReady,
// it does not stop the status from being written.
const runtimeCallTimeout = 3 * time.Second

// The condition reasons and messages. The reasons are the kubelet's (tools and alerts match
// them); the messages name nodeagent.
const (
	reasonReady    = "KubeletReady"
	reasonNotReady = "KubeletNotReady"
	messageReady   = "nodeagent is posting ready status"

	reasonMemoryOK   = "KubeletHasSufficientMemory"
	reasonMemoryLow  = "KubeletHasInsufficientMemory"
	messageMemoryOK  = "nodeagent has sufficient memory available"
	messageMemoryLow = "nodeagent has insufficient memory available"

	reasonDiskOK   = "KubeletHasNoDiskPressure"
	reasonDiskLow  = "KubeletHasDiskPressure"
	messageDiskOK  = "nodeagent has no disk pressure"
	messageDiskLow = "nodeagent has disk pressure"

	reasonPIDOK   = "KubeletHasSufficientPID"
	reasonPIDLow  = "KubeletHasInsufficientPID"
	messagePIDOK  = "nodeagent has sufficient PID available"
	messagePIDLow = "nodeagent has insufficient PID available"

	// No kubelet sets NetworkUnavailable: the network plugin does (Calico's "CalicoIsUp"),
	// and here the agent is the network plugin.
	reasonNetworkReady    = "NodeagentNetworkReady"
	reasonNetworkNotReady = "NodeagentNetworkNotReady"
	messageNetworkReady   = "nodeagent pod network is ready"
)

// hostReadings are the last good host readings; nil until one succeeded. A reading that fails
// keeps the last good one, so one unreadable file does not flap a condition.
type hostReadings struct {
	memory *MemoryStats
	fs     *FilesystemStats
	procs  *ProcessStats
}

// read refreshes n.readings, logging each failing reading once per distinct error.
func (n *NodeAgent) read() {
	if m, err := n.machine.Memory(); err != nil {
		n.readLog("memory").failed(err)
	} else {
		n.readLog("memory").resolved()
		n.readings.memory = &m
	}
	if fs, err := n.machine.Filesystem(n.rootDir); err != nil {
		n.readLog("filesystem").failed(err)
	} else {
		n.readLog("filesystem").resolved()
		n.readings.fs = &fs
	}
	if p, err := n.machine.Processes(); err != nil {
		n.readLog("processes").failed(err)
	} else {
		n.readLog("processes").resolved()
		n.readings.procs = &p
	}
}

func (n *NodeAgent) readLog(reading string) *problemLog {
	if n.readLogs == nil {
		n.readLogs = map[string]*problemLog{}
	}
	p := n.readLogs[reading]
	if p == nil {
		p = newProblemLog(n.log.WithField("reading", reading), "host reading")
		n.readLogs[reading] = p
	}
	return p
}

// desiredStatus computes the part of the Node's status the agent owns, with zero condition
// times: applyStatus sets those. It reads the host and asks the runtime and the network.
func (n *NodeAgent) desiredStatus(ctx context.Context) v1.NodeStatus {
	n.read()
	if n.runtimeVersion != nil {
		rctx, cancel := context.WithTimeout(ctx, runtimeCallTimeout)
		v, err := n.runtimeVersion(rctx)
		cancel()
		if err != nil {
			n.readLog("runtime version").failed(err)
		} else {
			n.readLog("runtime version").resolved()
			n.lastRuntime = v
		}
	}
	var info MachineInfo
	if n.info != nil {
		info = *n.info
	}
	st := v1.NodeStatus{
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               info.MachineID,
			SystemUUID:              info.SystemUUID,
			BootID:                  info.BootID,
			KernelVersion:           info.KernelVersion,
			OSImage:                 info.OSImage,
			ContainerRuntimeVersion: n.lastRuntime,
			KubeletVersion:          n.version,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: n.apiPort}},
	}
	if n.nodeIP != "" {
		st.Addresses = append(st.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: n.nodeIP})
	}
	st.Addresses = append(st.Addresses, v1.NodeAddress{Type: v1.NodeHostName, Address: n.hostname})

	st.Capacity = machineCapacity(info.CPUs, n.readings.memory, n.readings.fs)
	st.Capacity[v1.ResourcePods] = *resource.NewQuantity(int64(n.maxPods), resource.DecimalSI)
	st.Allocatable = allocatable(st.Capacity, n.reserved)
	st.Conditions = n.conditions(ctx)
	return st
}

// conditions are the agent's node conditions, with zero times.
func (n *NodeAgent) conditions(ctx context.Context) []v1.NodeCondition {
	var conds []v1.NodeCondition
	cond := func(t v1.NodeConditionType, bad bool, okReason, okMsg, badReason, badMsg string) {
		c := v1.NodeCondition{Type: t, Status: v1.ConditionFalse, Reason: okReason, Message: okMsg}
		if bad {
			c.Status, c.Reason, c.Message = v1.ConditionTrue, badReason, badMsg
		}
		conds = append(conds, c)
	}
	var networkErr error
	if n.networkReady != nil {
		networkErr = n.networkReady()
		msg := messageNetworkReady
		if networkErr != nil {
			msg = networkErr.Error()
		}
		cond(v1.NodeNetworkUnavailable, networkErr != nil, reasonNetworkReady, msg, reasonNetworkNotReady, msg)
	}
	r := n.readings
	cond(v1.NodeMemoryPressure, r.memory != nil && r.memory.Available < memoryAvailableMin,
		reasonMemoryOK, messageMemoryOK, reasonMemoryLow, messageMemoryLow)
	cond(v1.NodeDiskPressure, r.fs != nil && diskPressure(*r.fs),
		reasonDiskOK, messageDiskOK, reasonDiskLow, messageDiskLow)
	cond(v1.NodePIDPressure, r.procs != nil && r.procs.Max > 0 && r.procs.Running*100 > r.procs.Max*processesMaxUsedPct,
		reasonPIDOK, messagePIDOK, reasonPIDLow, messagePIDLow)

	// The kubelet's Ready: False with every reason at once, aggregated as it aggregates them.
	var errs []error
	if n.runtimeReady != nil {
		rctx, cancel := context.WithTimeout(ctx, runtimeCallTimeout)
		err := n.runtimeReady(rctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("container runtime is down: %w", err))
		}
	}
	if networkErr != nil {
		errs = append(errs, fmt.Errorf("container runtime network not ready: %w", networkErr))
	}
	ready := v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: reasonReady, Message: messageReady}
	if agg := utilerrors.NewAggregate(errs); agg != nil {
		ready.Status, ready.Reason, ready.Message = v1.ConditionFalse, reasonNotReady, agg.Error()
	}
	return append(conds, ready)
}

func diskPressure(fs FilesystemStats) bool {
	if fs.Capacity > 0 && fs.Available*100 < fs.Capacity*diskAvailableMinPct {
		return true
	}
	return fs.Inodes > 0 && fs.InodesFree*100 < fs.Inodes*inodesFreeMinPct
}

// machineCapacity is the host's CPUs, memory and the filesystem's size; a reading that is
// missing (nil, or no CPUs) leaves its resource out.
func machineCapacity(cpus int, mem *MemoryStats, fs *FilesystemStats) v1.ResourceList {
	c := v1.ResourceList{}
	if cpus > 0 {
		c[v1.ResourceCPU] = *resource.NewQuantity(int64(cpus), resource.DecimalSI)
	}
	if mem != nil {
		c[v1.ResourceMemory] = *resource.NewQuantity(int64(mem.Total), resource.BinarySI)
	}
	if fs != nil {
		c[v1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Capacity), resource.BinarySI)
	}
	return c
}

// NodeAllocatable is the CPU, memory and ephemeral storage the node offers pods, as a
// registered Node's status.allocatable reports them: the host's CPUs, its memory and the
// size of rootDir's filesystem, less the reserved lists. Pods read it through a
// resourceFieldRef to a limit they do not set. Readings that fail are left out, with the
// error returned beside what could be read.
func NodeAllocatable(m Machine, rootDir string, reserved ...v1.ResourceList) (v1.ResourceList, error) {
	var (
		errs []error
		mem  *MemoryStats
		fs   *FilesystemStats
	)
	info, err := m.Info()
	if err != nil {
		errs = append(errs, fmt.Errorf("read machine info: %w", err))
	}
	if r, err := m.Memory(); err != nil {
		errs = append(errs, fmt.Errorf("read memory: %w", err))
	} else {
		mem = &r
	}
	if r, err := m.Filesystem(rootDir); err != nil {
		errs = append(errs, fmt.Errorf("read filesystem of %s: %w", rootDir, err))
	} else {
		fs = &r
	}
	return allocatable(machineCapacity(info.CPUs, mem, fs), addResources(reserved...)), errors.Join(errs...)
}

// allocatable is capacity minus reserved, resource by resource, never below zero. Reserved
// resources the node does not have are ignored.
func allocatable(capacity, reserved v1.ResourceList) v1.ResourceList {
	alloc := v1.ResourceList{}
	for name, c := range capacity {
		q := c.DeepCopy()
		if r, ok := reserved[name]; ok {
			q.Sub(r)
			if q.Sign() < 0 {
				q = *resource.NewQuantity(0, c.Format)
			}
		}
		alloc[name] = q
	}
	return alloc
}

// addResources sums resource lists.
func addResources(lists ...v1.ResourceList) v1.ResourceList {
	sum := v1.ResourceList{}
	for _, l := range lists {
		for name, q := range l {
			s := sum[name]
			s.Add(q)
			sum[name] = s
		}
	}
	return sum
}

// applyStatus writes want (from desiredStatus) into node's status at time now. It replaces
// what the agent owns (addresses, nodeInfo, daemon endpoints), sets its capacity and
// allocatable entries (keeping others', such as extended resources an admin advertised), and
// sets its conditions (keeping others'): lastHeartbeatTime is now; lastTransitionTime is the
// stored one while the condition's status is unchanged, else now.
func applyStatus(node *v1.Node, want v1.NodeStatus, now time.Time) {
	st := &node.Status
	st.Addresses = slices.Clone(want.Addresses)
	st.NodeInfo = want.NodeInfo
	st.DaemonEndpoints = want.DaemonEndpoints
	for _, l := range []struct {
		dst *v1.ResourceList
		src v1.ResourceList
	}{
		{&st.Capacity, want.Capacity},
		{&st.Allocatable, want.Allocatable},
	} {
		if *l.dst == nil {
			*l.dst = v1.ResourceList{}
		}
		for name, q := range l.src {
			(*l.dst)[name] = q.DeepCopy()
		}
	}
	t := metav1.NewTime(now)
	for _, c := range want.Conditions {
		c.LastHeartbeatTime, c.LastTransitionTime = t, t
		i := slices.IndexFunc(st.Conditions, func(old v1.NodeCondition) bool { return old.Type == c.Type })
		if i < 0 {
			st.Conditions = append(st.Conditions, c)
			continue
		}
		if old := st.Conditions[i]; old.Status == c.Status && !old.LastTransitionTime.IsZero() {
			c.LastTransitionTime = old.LastTransitionTime
		}
		st.Conditions[i] = c
	}
}

// syncStatus is one pass of the status loop: it recomputes the status and patches it when it
// differs from the one last patched (heartbeat times aside), or when the last patch is
// StatusReportInterval old. A Node that is gone (deleted by an admin) is registered again.
func (n *NodeAgent) syncStatus(ctx context.Context) error {
	now := n.clock.Now()
	want := n.desiredStatus(ctx)
	if n.posted != nil && apiequality.Semantic.DeepEqual(*n.posted, want) && now.Sub(n.postedAt) < n.statusReport {
		return nil
	}
	// The patch is computed against the Node as stored now, not as last patched: others
	// write to it too (conditions, taints), and a five-minute report repairs any of the
	// agent's fields someone else changed.
	base, err := n.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n.log.Warn("node object is gone from the API server; registering it again")
		_, err := n.registerOnce(ctx)
		return err
	}
	if err != nil {
		return fmt.Errorf("get node %s: %w", n.name, err)
	}
	node := base.DeepCopy()
	applyStatus(node, want, now)
	stored, err := n.patchStatus(ctx, base, node)
	if err != nil {
		return err
	}
	n.logTransitions(want.Conditions)
	n.stored(stored, want, now)
	return nil
}

// logTransitions logs the conditions whose status differs from the last patched.
func (n *NodeAgent) logTransitions(conds []v1.NodeCondition) {
	if n.posted == nil {
		return
	}
	for _, c := range conds {
		i := slices.IndexFunc(n.posted.Conditions, func(old v1.NodeCondition) bool { return old.Type == c.Type })
		if i >= 0 && n.posted.Conditions[i].Status == c.Status {
			continue
		}
		n.log.WithFields(logrus.Fields{"condition": c.Type, "status": c.Status, "reason": c.Reason,
			"message": c.Message}).Info("node condition changed")
	}
}

// patchStatus patches the Node's status subresource from base to want with a strategic merge
// patch of only what differs, and returns the Node as stored. Metadata differences (labels)
// go in the same patch: the status subresource of Nodes takes them, as the kubelet relies on,
// and a node may patch nodes/status. want's spec is ignored.
func (n *NodeAgent) patchStatus(ctx context.Context, base, want *v1.Node) (*v1.Node, error) {
	diff := want.DeepCopy()
	diff.Spec = base.Spec
	// status.addresses is declared as merged by type, a key that is not unique (two
	// InternalIPs): a changed list must replace the stored one whole, as the kubelet does.
	replaceAddresses := len(base.Status.Addresses) > 0 &&
		!apiequality.Semantic.DeepEqual(base.Status.Addresses, want.Status.Addresses)
	if replaceAddresses {
		diff.Status.Addresses = base.Status.Addresses
	}
	oldJSON, err := json.Marshal(base)
	if err != nil {
		return nil, fmt.Errorf("patch node %s status: %w", n.name, err)
	}
	newJSON, err := json.Marshal(diff)
	if err != nil {
		return nil, fmt.Errorf("patch node %s status: %w", n.name, err)
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, v1.Node{})
	if err != nil {
		return nil, fmt.Errorf("patch node %s status: %w", n.name, err)
	}
	if replaceAddresses {
		if patch, err = withAddressesReplaced(patch, want.Status.Addresses); err != nil {
			return nil, fmt.Errorf("patch node %s status: %w", n.name, err)
		}
	}
	if string(patch) == "{}" {
		return base, nil
	}
	stored, err := n.client.CoreV1().Nodes().Patch(ctx, n.name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("patch node %s status: %w", n.name, err)
	}
	return stored, nil
}

// withAddressesReplaced adds to patch a status.addresses that replaces the stored list.
func withAddressesReplaced(patch []byte, addrs []v1.NodeAddress) ([]byte, error) {
	var p map[string]any
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, err
	}
	status, _ := p["status"].(map[string]any)
	if status == nil {
		if _, ok := p["status"]; ok {
			return nil, errors.New("unexpected status in patch")
		}
		status = map[string]any{}
		p["status"] = status
	}
	list := make([]any, 0, len(addrs)+1)
	for _, a := range addrs {
		list = append(list, a)
	}
	status["addresses"] = append(list, map[string]any{"$patch": "replace"})
	return json.Marshal(p)
}
