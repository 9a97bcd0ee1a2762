package controlplane

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient/kubeclienttest"
)

// fakeMachine is a host whose readings the test sets.
type fakeMachine struct {
	mu      sync.Mutex
	info    MachineInfo
	mem     MemoryStats
	memErr  error
	fs      FilesystemStats
	fsPaths []string // the paths Filesystem was asked for
	procs   ProcessStats
}

func (m *fakeMachine) Info() (MachineInfo, error) { return m.info, nil }

func (m *fakeMachine) Memory() (MemoryStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mem, m.memErr
}

func (m *fakeMachine) Filesystem(path string) (FilesystemStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fsPaths = append(m.fsPaths, path)
	return m.fs, nil
}

func (m *fakeMachine) Processes() (ProcessStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.procs, nil
}

func (m *fakeMachine) set(f func(m *fakeMachine)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

const giB = 1 << 30

func newFakeMachine() *fakeMachine {
	return &fakeMachine{
		info: MachineInfo{CPUs: 4, MachineID: "m-id", SystemUUID: "sys-uuid", BootID: "boot-id",
			KernelVersion: "6.1.0-test", OSImage: "Debian GNU/Linux 12 (bookworm)"},
		mem:   MemoryStats{Total: 8 * giB, Available: 6 * giB},
		fs:    FilesystemStats{Capacity: 100 * giB, Available: 50 * giB, Inodes: 1000, InodesFree: 900},
		procs: ProcessStats{Running: 300, Max: 4194304},
	}
}

// nodeFixture is an agent on fakes, with switches for the runtime's and the network's health.
type nodeFixture struct {
	agent   *NodeAgent
	client  *fake.Clientset
	machine *fakeMachine
	clock   *clocktesting.FakeClock
	logs    *logtest.Hook

	mu         sync.Mutex
	runtimeErr error
	networkErr error
}

func (tn *nodeFixture) setRuntimeErr(err error) { tn.mu.Lock(); tn.runtimeErr = err; tn.mu.Unlock() }
func (tn *nodeFixture) setNetworkErr(err error) { tn.mu.Lock(); tn.networkErr = err; tn.mu.Unlock() }

var nodeT0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newNodeFixture(t *testing.T, mutate func(*NodeConfig), objects ...k8sruntime.Object) *nodeFixture {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	tn := &nodeFixture{
		client:  fake.NewClientset(objects...),
		machine: newFakeMachine(),
		clock:   clocktesting.NewFakeClock(nodeT0),
		logs:    hook,
	}
	// The API server gives every new object a UID; the fake does not.
	uids := 0
	tn.client.PrependReactor("create", "*", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		if obj, ok := a.(k8stesting.CreateAction).GetObject().(metav1.Object); ok && obj.GetUID() == "" {
			uids++
			obj.SetUID(types.UID(fmt.Sprintf("uid-%d", uids)))
		}
		return false, nil, nil
	})
	cfg := NodeConfig{
		Client:         kubeclienttest.Wrap(tn.client),
		NodeName:       "n1",
		NodeIP:         "10.0.0.5",
		Hostname:       "N1.example",
		Labels:         map[string]string{"example.com/pool": "edge", "node.kubernetes.io/role": "worker"},
		Taints:         []v1.Taint{{Key: "example.com/new", Effect: v1.TaintEffectNoSchedule}},
		MaxPods:        50,
		SystemReserved: v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("1Gi")},
		KubeReserved: v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("512Mi"),
			v1.ResourceEphemeralStorage: resource.MustParse("200Gi")},
		RootDir:        "/var/lib/nodeagent",
		NodeAPIPort:    10250,
		Version:        "v0.9.0",
		RuntimeVersion: func(context.Context) (string, error) { return "containerd://2.1.0", nil },
		RuntimeReady: func(context.Context) error {
			tn.mu.Lock()
			defer tn.mu.Unlock()
			return tn.runtimeErr
		},
		NetworkReady: func() error {
			tn.mu.Lock()
			defer tn.mu.Unlock()
			return tn.networkErr
		},
		Machine: tn.machine,
		Log:     logrus.NewEntry(logger),
		Clock:   tn.clock,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := NewNodeAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tn.agent = a
	return tn
}

func (tn *nodeFixture) register(t *testing.T) *v1.Node {
	t.Helper()
	node, err := tn.agent.Register(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return node
}

func (tn *nodeFixture) node(t *testing.T) *v1.Node {
	t.Helper()
	// Through the tracker, so that the test's reads are not among the agent's actions.
	obj, err := tn.client.Tracker().Get(v1.SchemeGroupVersion.WithResource("nodes"), "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*v1.Node)
}

func (tn *nodeFixture) syncStatus(t *testing.T) *v1.Node {
	t.Helper()
	if err := tn.agent.syncStatus(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tn.node(t)
}

// patches counts the status patches the agent sent.
func (tn *nodeFixture) patches() int {
	n := 0
	for _, a := range tn.client.Actions() {
		if a.GetVerb() == "patch" && a.GetResource().Resource == "nodes" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

func nodeCondition(t *testing.T, node *v1.Node, typ v1.NodeConditionType) v1.NodeCondition {
	t.Helper()
	for _, c := range node.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("node has no %s condition: %+v", typ, node.Status.Conditions)
	return v1.NodeCondition{}
}

// wantCondition checks a condition's status, reason, message (when not "") and times.
func wantCondition(t *testing.T, node *v1.Node, typ v1.NodeConditionType, status v1.ConditionStatus, reason, message string, heartbeat, transition time.Time) {
	t.Helper()
	c := nodeCondition(t, node, typ)
	if c.Status != status || c.Reason != reason || (message != "" && c.Message != message) {
		t.Errorf("%s = %s/%s/%q, want %s/%s/%q", typ, c.Status, c.Reason, c.Message, status, reason, message)
	}
	if !c.LastHeartbeatTime.Time.Equal(heartbeat) {
		t.Errorf("%s lastHeartbeatTime = %v, want %v", typ, c.LastHeartbeatTime.Time, heartbeat)
	}
	if !c.LastTransitionTime.Time.Equal(transition) {
		t.Errorf("%s lastTransitionTime = %v, want %v", typ, c.LastTransitionTime.Time, transition)
	}
}

func wantQuantities(t *testing.T, what string, got v1.ResourceList, want map[v1.ResourceName]string) {
	t.Helper()
	for name, w := range want {
		q, ok := got[name]
		if !ok {
			t.Errorf("%s has no %s", what, name)
			continue
		}
		if q.Cmp(resource.MustParse(w)) != 0 {
			t.Errorf("%s %s = %s, want %s", what, name, q.String(), w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s = %v, want exactly %v", what, got, want)
	}
}

func TestRegisterCreatesNodeAsKubeletDoes(t *testing.T) {
	tn := newNodeFixture(t, nil)
	returned := tn.register(t)
	node := tn.node(t)
	if returned.UID != node.UID || returned.Name != "n1" {
		t.Errorf("Register returned %s/%s, stored is %s/%s", returned.Name, returned.UID, node.Name, node.UID)
	}

	wantLabels := map[string]string{
		"kubernetes.io/hostname": "n1.example",
		"kubernetes.io/os":       runtime.GOOS, "beta.kubernetes.io/os": runtime.GOOS,
		"kubernetes.io/arch": runtime.GOARCH, "beta.kubernetes.io/arch": runtime.GOARCH,
		"example.com/pool": "edge", "node.kubernetes.io/role": "worker",
	}
	if len(node.Labels) != len(wantLabels) {
		t.Errorf("labels = %v, want %v", node.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if node.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	if len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Key != "example.com/new" {
		t.Errorf("taints = %v, want the configured one", node.Spec.Taints)
	}
	wantAddrs := []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.5"}, {Type: v1.NodeHostName, Address: "n1.example"}}
	if len(node.Status.Addresses) != 2 || node.Status.Addresses[0] != wantAddrs[0] || node.Status.Addresses[1] != wantAddrs[1] {
		t.Errorf("addresses = %v, want %v", node.Status.Addresses, wantAddrs)
	}
	wantQuantities(t, "capacity", node.Status.Capacity, map[v1.ResourceName]string{
		v1.ResourceCPU: "4", v1.ResourceMemory: "8Gi", v1.ResourcePods: "50", v1.ResourceEphemeralStorage: "100Gi"})
	// cpu 4 - 0.5 - 0.5; memory 8Gi - 1Gi - 512Mi; ephemeral-storage 100Gi - 200Gi stops at 0.
	wantQuantities(t, "allocatable", node.Status.Allocatable, map[v1.ResourceName]string{
		v1.ResourceCPU: "3", v1.ResourceMemory: "6656Mi", v1.ResourcePods: "50", v1.ResourceEphemeralStorage: "0"})
	wantInfo := v1.NodeSystemInfo{MachineID: "m-id", SystemUUID: "sys-uuid", BootID: "boot-id", KernelVersion: "6.1.0-test",
		OSImage: "Debian GNU/Linux 12 (bookworm)", ContainerRuntimeVersion: "containerd://2.1.0", KubeletVersion: "v0.9.0",
		OperatingSystem: runtime.GOOS, Architecture: runtime.GOARCH}
	if node.Status.NodeInfo != wantInfo {
		t.Errorf("nodeInfo = %+v, want %+v", node.Status.NodeInfo, wantInfo)
	}
	if p := node.Status.DaemonEndpoints.KubeletEndpoint.Port; p != 10250 {
		t.Errorf("kubeletEndpoint port = %d, want 10250", p)
	}
	wantCondition(t, node, v1.NodeReady, v1.ConditionTrue, "KubeletReady", "nodeagent is posting ready status", nodeT0, nodeT0)
	wantCondition(t, node, v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "", nodeT0, nodeT0)
	wantCondition(t, node, v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "", nodeT0, nodeT0)
	wantCondition(t, node, v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "", nodeT0, nodeT0)
	wantCondition(t, node, v1.NodeNetworkUnavailable, v1.ConditionFalse, "NodeagentNetworkReady", "", nodeT0, nodeT0)
	if len(node.Status.Conditions) != 5 {
		t.Errorf("conditions = %+v, want 5", node.Status.Conditions)
	}
	if paths := tn.machine.fsPaths; len(paths) == 0 || paths[0] != "/var/lib/nodeagent" {
		t.Errorf("filesystem read for %v, want the root dir", paths)
	}
}

func TestRegisterAdoptsExistingNodeKeepingItsSpec(t *testing.T) {
	earlier := metav1.NewTime(nodeT0.Add(-time.Hour))
	existing := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "uid-1",
			Labels: map[string]string{"custom": "keep", "kubernetes.io/hostname": "old"}},
		Spec: v1.NodeSpec{PodCIDR: "10.244.3.0/24", PodCIDRs: []string{"10.244.3.0/24"},
			Taints: []v1.Taint{{Key: "dedicated", Value: "db", Effect: v1.TaintEffectNoSchedule}}},
		Status: v1.NodeStatus{
			// Two InternalIPs: merging by type would keep one of them.
			Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.9"}, {Type: v1.NodeInternalIP, Address: "10.0.0.10"}},
			Capacity:  v1.ResourceList{"example.com/dongle": resource.MustParse("2")},
			Conditions: []v1.NodeCondition{
				{Type: "ExampleHealthy", Status: v1.ConditionTrue, Reason: "Fine", LastTransitionTime: earlier, LastHeartbeatTime: earlier},
				{Type: v1.NodeReady, Status: v1.ConditionFalse, Reason: "KubeletNotReady", LastTransitionTime: earlier, LastHeartbeatTime: earlier},
				{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastTransitionTime: earlier, LastHeartbeatTime: earlier},
			},
		},
	}
	tn := newNodeFixture(t, nil, existing)
	returned := tn.register(t)
	node := tn.node(t)
	if returned.Spec.PodCIDR != "10.244.3.0/24" {
		t.Errorf("Register returned podCIDR %q, want the stored one", returned.Spec.PodCIDR)
	}
	if node.Spec.PodCIDR != "10.244.3.0/24" || len(node.Spec.PodCIDRs) != 1 {
		t.Errorf("spec = %+v, want podCIDR kept", node.Spec)
	}
	if len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Key != "dedicated" {
		t.Errorf("taints = %v, want only the existing one (configured taints apply at creation only)", node.Spec.Taints)
	}
	for k, v := range map[string]string{"custom": "keep", "kubernetes.io/hostname": "n1.example", "example.com/pool": "edge"} {
		if node.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	wantAddrs := []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.5"}, {Type: v1.NodeHostName, Address: "n1.example"}}
	if len(node.Status.Addresses) != 2 || node.Status.Addresses[0] != wantAddrs[0] || node.Status.Addresses[1] != wantAddrs[1] {
		t.Errorf("addresses = %v, want exactly %v", node.Status.Addresses, wantAddrs)
	}
	if q := node.Status.Capacity["example.com/dongle"]; q.Cmp(resource.MustParse("2")) != 0 {
		t.Errorf("extended resource capacity = %v, want kept", node.Status.Capacity)
	}
	if c := nodeCondition(t, node, "ExampleHealthy"); c.Status != v1.ConditionTrue || !c.LastHeartbeatTime.Equal(&earlier) {
		t.Errorf("foreign condition = %+v, want untouched", c)
	}
	wantCondition(t, node, v1.NodeReady, v1.ConditionTrue, "KubeletReady", "", nodeT0, nodeT0)
	wantCondition(t, node, v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "", nodeT0, earlier.Time)
	for _, a := range tn.client.Actions() {
		if a.GetVerb() == "update" || (a.GetVerb() == "patch" && a.GetSubresource() != "status") {
			t.Errorf("adoption used %s %s/%s; a node may only patch its status", a.GetVerb(), a.GetResource().Resource, a.GetSubresource())
		}
	}
}

func TestConditionTransitions(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.register(t)
	t1, t2, t3, t4 := nodeT0.Add(10*time.Second), nodeT0.Add(20*time.Second), nodeT0.Add(30*time.Second), nodeT0.Add(40*time.Second)

	tn.clock.SetTime(t1)
	tn.machine.set(func(m *fakeMachine) { m.mem.Available = 99 << 20 })
	node := tn.syncStatus(t)
	wantCondition(t, node, v1.NodeMemoryPressure, v1.ConditionTrue, "KubeletHasInsufficientMemory",
		"nodeagent has insufficient memory available", t1, t1)
	wantCondition(t, node, v1.NodeReady, v1.ConditionTrue, "KubeletReady", "", t1, nodeT0)

	tn.clock.SetTime(t2)
	tn.machine.set(func(m *fakeMachine) { m.mem.Available = 101 << 20 })
	node = tn.syncStatus(t)
	wantCondition(t, node, v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "", t2, t2)

	tn.clock.SetTime(t3)
	tn.setNetworkErr(errors.New("cni config uninitialized"))
	node = tn.syncStatus(t)
	wantCondition(t, node, v1.NodeReady, v1.ConditionFalse, "KubeletNotReady",
		"container runtime network not ready: cni config uninitialized", t3, t3)
	wantCondition(t, node, v1.NodeNetworkUnavailable, v1.ConditionTrue, "NodeagentNetworkNotReady", "cni config uninitialized", t3, t3)
	wantCondition(t, node, v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "", t3, t2)

	tn.clock.SetTime(t4)
	tn.setRuntimeErr(errors.New("connection refused"))
	node = tn.syncStatus(t)
	wantCondition(t, node, v1.NodeReady, v1.ConditionFalse, "KubeletNotReady",
		"[container runtime is down: connection refused, container runtime network not ready: cni config uninitialized]", t4, t3)

	tn.clock.SetTime(t4.Add(10 * time.Second))
	tn.setRuntimeErr(nil)
	tn.setNetworkErr(nil)
	node = tn.syncStatus(t)
	wantCondition(t, node, v1.NodeReady, v1.ConditionTrue, "KubeletReady", "nodeagent is posting ready status", tn.clock.Now(), tn.clock.Now())
	wantCondition(t, node, v1.NodeNetworkUnavailable, v1.ConditionFalse, "NodeagentNetworkReady", "", tn.clock.Now(), tn.clock.Now())
}

func TestPressureThresholds(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(m *fakeMachine)
		typ  v1.NodeConditionType
		want v1.ConditionStatus
	}{
		{"disk 10% available is no pressure", func(m *fakeMachine) { m.fs.Available = 10 * giB }, v1.NodeDiskPressure, v1.ConditionFalse},
		{"disk under 10% available", func(m *fakeMachine) { m.fs.Available = 10*giB - 1 }, v1.NodeDiskPressure, v1.ConditionTrue},
		{"inodes under 5% free", func(m *fakeMachine) { m.fs.InodesFree = 49 }, v1.NodeDiskPressure, v1.ConditionTrue},
		{"no inode count (btrfs)", func(m *fakeMachine) { m.fs.Inodes, m.fs.InodesFree = 0, 0 }, v1.NodeDiskPressure, v1.ConditionFalse},
		{"processes at 90%", func(m *fakeMachine) { m.procs = ProcessStats{Running: 900, Max: 1000} }, v1.NodePIDPressure, v1.ConditionFalse},
		{"processes over 90%", func(m *fakeMachine) { m.procs = ProcessStats{Running: 901, Max: 1000} }, v1.NodePIDPressure, v1.ConditionTrue},
		{"memory at 100Mi", func(m *fakeMachine) { m.mem.Available = 100 << 20 }, v1.NodeMemoryPressure, v1.ConditionFalse},
		{"unreadable memory is no evidence of pressure", func(m *fakeMachine) { m.memErr = errors.New("no meminfo") }, v1.NodeMemoryPressure, v1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newNodeFixture(t, nil)
			tn.machine.set(tc.set)
			node := tn.register(t)
			if c := nodeCondition(t, node, tc.typ); c.Status != tc.want {
				t.Errorf("%s = %s, want %s", tc.typ, c.Status, tc.want)
			}
		})
	}
}

// A reading that fails keeps the last good one rather than dropping capacity or flapping.
func TestFailedReadingKeepsLastGood(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.register(t)
	tn.machine.set(func(m *fakeMachine) { m.memErr = errors.New("meminfo: permission denied") })
	tn.clock.Step(10 * time.Second)
	before := tn.patches()
	node := tn.syncStatus(t)
	if tn.patches() != before {
		t.Errorf("a failed memory reading patched the status")
	}
	if q := node.Status.Capacity[v1.ResourceMemory]; q.Cmp(resource.MustParse("8Gi")) != 0 {
		t.Errorf("memory capacity = %s, want the last good 8Gi", q.String())
	}
	warnings := 0
	for range 3 {
		tn.clock.Step(10 * time.Second)
		tn.syncStatus(t)
	}
	for _, e := range tn.logs.AllEntries() {
		if e.Level == logrus.WarnLevel && e.Data["reading"] == "memory" {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("%d warnings about the memory reading, want 1", warnings)
	}
}

func TestStatusPatchedOnlyWhenChangedOrEveryReportInterval(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.register(t)
	for i := 1; i < 30; i++ { // up to 4m50s: nothing changed, nothing sent
		tn.clock.Step(10 * time.Second)
		tn.syncStatus(t)
	}
	if p := tn.patches(); p != 0 {
		t.Fatalf("%d status patches while nothing changed, want 0", p)
	}
	for _, a := range tn.client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "nodes" {
			t.Fatalf("the agent read the Node while it had nothing to write")
		}
	}
	tn.clock.Step(10 * time.Second) // 5 min since registration
	node := tn.syncStatus(t)
	if p := tn.patches(); p != 1 {
		t.Fatalf("%d status patches at the report interval, want 1", p)
	}
	wantCondition(t, node, v1.NodeReady, v1.ConditionTrue, "KubeletReady", "", nodeT0.Add(5*time.Minute), nodeT0)

	tn.clock.Step(10 * time.Second)
	tn.syncStatus(t)
	if p := tn.patches(); p != 1 {
		t.Fatalf("%d status patches 10 s after a report with nothing changed, want 1", p)
	}
	tn.clock.Step(10 * time.Second)
	tn.machine.set(func(m *fakeMachine) { m.fs.Available = giB })
	node = tn.syncStatus(t)
	if p := tn.patches(); p != 2 {
		t.Fatalf("%d status patches after a change, want 2", p)
	}
	wantCondition(t, node, v1.NodeDiskPressure, v1.ConditionTrue, "KubeletHasDiskPressure", "nodeagent has disk pressure",
		tn.clock.Now(), tn.clock.Now())
}

// The patch carries only what changed: a memory pressure change sends no addresses,
// capacity or nodeInfo.
func TestStatusPatchCarriesOnlyChanges(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.register(t)
	tn.clock.Step(10 * time.Second)
	tn.machine.set(func(m *fakeMachine) { m.mem.Available = 1 << 20 })
	tn.syncStatus(t)
	var patch string
	for _, a := range tn.client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			patch = string(p.GetPatch())
		}
	}
	if patch == "" {
		t.Fatal("no patch sent")
	}
	for _, absent := range []string{"addresses", "capacity", "allocatable", "nodeInfo", "labels", "spec"} {
		if strings.Contains(patch, `"`+absent+`"`) {
			t.Errorf("patch has %s: %s", absent, patch)
		}
	}
	if !strings.Contains(patch, "KubeletHasInsufficientMemory") {
		t.Errorf("patch lacks the memory condition: %s", patch)
	}
}

func TestDeletedNodeIsRegisteredAgain(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.register(t)
	if err := tn.client.CoreV1().Nodes().Delete(context.Background(), "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	uid := tn.agent.UID()
	tn.clock.Step(5 * time.Minute)
	node := tn.syncStatus(t)
	if node.UID == uid || tn.agent.UID() != node.UID {
		t.Errorf("UID() = %s after re-registration; old %s, new %s", tn.agent.UID(), uid, node.UID)
	}
	if c := nodeCondition(t, node, v1.NodeReady); c.Status != v1.ConditionTrue {
		t.Errorf("Ready = %s after re-registration", c.Status)
	}
}

func storedLease(t *testing.T, tn *nodeFixture) *coordinationv1.Lease {
	t.Helper()
	obj, err := tn.client.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), "kube-node-lease", "n1")
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*coordinationv1.Lease)
}

func TestLeaseCreatedThenRenewed(t *testing.T) {
	tn := newNodeFixture(t, nil)
	node := tn.register(t)
	ctx := context.Background()
	if err := tn.agent.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	l := storedLease(t, tn)
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "n1" {
		t.Errorf("holderIdentity = %v, want n1", l.Spec.HolderIdentity)
	}
	if l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds != 40 {
		t.Errorf("leaseDurationSeconds = %v, want 40", l.Spec.LeaseDurationSeconds)
	}
	if l.Spec.RenewTime == nil || !l.Spec.RenewTime.Time.Equal(nodeT0) {
		t.Errorf("renewTime = %v, want %v", l.Spec.RenewTime, nodeT0)
	}
	if len(l.OwnerReferences) != 1 || l.OwnerReferences[0].Kind != "Node" || l.OwnerReferences[0].UID != node.UID {
		t.Errorf("ownerReferences = %+v, want the Node (uid %s)", l.OwnerReferences, node.UID)
	}
	for i := 1; i <= 3; i++ {
		tn.clock.Step(10 * time.Second)
		if err := tn.agent.renewLease(ctx); err != nil {
			t.Fatal(err)
		}
		if l := storedLease(t, tn); !l.Spec.RenewTime.Time.Equal(tn.clock.Now()) {
			t.Errorf("renewal %d: renewTime = %v, want %v", i, l.Spec.RenewTime.Time, tn.clock.Now())
		}
	}
	var verbs []string
	for _, a := range tn.client.Actions() {
		if a.GetResource().Resource == "leases" {
			verbs = append(verbs, a.GetVerb())
		}
	}
	if got := strings.Join(verbs, ","); got != "get,create,update,update,update" {
		t.Errorf("lease calls = %s, want get,create then updates", got)
	}
}

// A conflict (someone else wrote the Lease) drops the cached copy: the next pass reads it.
func TestLeaseConflictRereads(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.register(t)
	ctx := context.Background()
	if err := tn.agent.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	conflicts := 1
	tn.client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "n1", errors.New("modified"))
		}
		return false, nil, nil
	})
	tn.clock.Step(10 * time.Second)
	if err := tn.agent.renewLease(ctx); !apierrors.IsConflict(err) {
		t.Fatalf("renewLease = %v, want the conflict", err)
	}
	tn.clock.Step(time.Second)
	if err := tn.agent.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if l := storedLease(t, tn); !l.Spec.RenewTime.Time.Equal(tn.clock.Now()) {
		t.Errorf("renewTime = %v, want %v", l.Spec.RenewTime.Time, tn.clock.Now())
	}
}

// stepWhileWaiting advances the fake clock each time someone waits on it, until done closes.
// It spins rather than sleeps: the waiting goroutine registers its timer without a signal.
func stepWhileWaiting(t *testing.T, clk *clocktesting.FakeClock, step time.Duration, done <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		if clk.HasWaiters() {
			clk.Step(step)
		}
		runtime.Gosched()
	}
}

func TestRegisterRetriesAndLogsEachDistinctErrorOnce(t *testing.T) {
	tn := newNodeFixture(t, nil)
	failures := []error{
		errors.New("connection refused"), errors.New("connection refused"), errors.New("connection refused"),
		apierrors.NewServiceUnavailable("etcd is starting"),
	}
	var mu sync.Mutex
	tn.client.PrependReactor("create", "nodes", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) > 0 {
			err := failures[0]
			failures = failures[1:]
			return true, nil, err
		}
		return false, nil, nil
	})
	done := make(chan struct{})
	var node *v1.Node
	var err error
	go func() {
		defer close(done)
		node, err = tn.agent.Register(context.Background())
	}()
	stepWhileWaiting(t, tn.clock, 10*time.Second, done)
	if err != nil || node == nil {
		t.Fatalf("Register = %v, %v", node, err)
	}
	var warnings, recovered int
	for _, e := range tn.logs.AllEntries() {
		switch {
		case e.Level == logrus.WarnLevel && strings.HasPrefix(e.Message, "node registration failed"):
			warnings++
		case e.Message == "node registration works again":
			recovered++
		}
	}
	if warnings != 2 || recovered != 1 {
		t.Errorf("%d warnings and %d recoveries logged, want 2 (one per distinct error) and 1", warnings, recovered)
	}
}

func TestRegisterStopsWhenContextEnds(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.client.PrependReactor("create", "nodes", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = tn.agent.Register(ctx)
	}()
	for !tn.clock.HasWaiters() {
		runtime.Gosched()
	}
	cancel()
	<-done
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Register = %v, want context.Canceled", err)
	}
}

// Run renews the Lease and rechecks the status on the clock, and returns when ctx ends.
func TestRunRenewsLeaseOnTheClock(t *testing.T) {
	tn := newNodeFixture(t, nil)
	tn.register(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tn.agent.Run(ctx)
	}()
	renewedAt := func(at time.Time) bool {
		obj, err := tn.client.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), "kube-node-lease", "n1")
		if err != nil {
			return false
		}
		l := obj.(*coordinationv1.Lease)
		return true && l.Spec.RenewTime != nil && l.Spec.RenewTime.Time.Equal(at)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 3; i++ {
		// Both loops wait on the clock once they are done with this tick.
		for !(renewedAt(tn.clock.Now()) && tn.clock.Waiters() == 2) {
			if time.Now().After(deadline) {
				t.Fatalf("tick %d: lease not renewed at %v", i, tn.clock.Now())
			}
			runtime.Gosched()
		}
		tn.clock.Step(10 * time.Second)
	}
	tn.setNetworkErr(errors.New("no CNI config"))
	for c := nodeCondition(t, tn.node(t), v1.NodeReady); c.Status != v1.ConditionFalse; c = nodeCondition(t, tn.node(t), v1.NodeReady) {
		if time.Now().After(deadline) {
			t.Fatal("Ready did not turn False on a status tick")
		}
		if tn.clock.Waiters() == 2 {
			tn.clock.Step(10 * time.Second)
		}
		runtime.Gosched()
	}
	cancel()
	<-done
}

func TestNewNodeAgentChecksLabels(t *testing.T) {
	for _, tc := range []struct {
		label string
		ok    bool
	}{
		{"example.com/pool", true},
		{"pool", true},
		{"node.kubernetes.io/role", true},
		{"kubelet.kubernetes.io/x", true},
		{"topology.kubernetes.io/zone", true},
		{"node-role.kubernetes.io/worker", false},
		{"kubernetes.io/foo", false},
		{"sub.k8s.io/x", false},
		{"bad key!", false},
	} {
		t.Run(tc.label, func(t *testing.T) {
			_, err := NewNodeAgent(NodeConfig{Client: kubeclienttest.Wrap(fake.NewClientset()), NodeName: "n1", RootDir: "/r",
				Log: logrus.NewEntry(logrus.New()), Labels: map[string]string{tc.label: "v"}})
			if (err == nil) != tc.ok {
				t.Errorf("NewNodeAgent with label %q: err = %v, want ok=%v", tc.label, err, tc.ok)
			}
		})
	}
}
