package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
	"github.com/nodeagent/nodeagent/test/kubetb"
)

// nodeTestLog sends the test bed's and the agent's lines to the test log.
type nodeTestLog struct{ t *testing.T }

func (w nodeTestLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startKubeTestbed starts a real kube-apiserver and etcd, or skips the test when
// hack/install-kube.sh has not built them.
func startKubeTestbed(t *testing.T) *kubetb.Cluster {
	t.Helper()
	if _, err := kubetb.Binaries(); errors.Is(err, kubetb.ErrNotBuilt) {
		t.Skipf("skipping the real API server test: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := kubetb.Start(ctx, t.TempDir(), nodeTestLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// nodeClient is a client with the node's own credentials, as the agent gets them.
func nodeClient(t *testing.T, c *kubetb.Cluster, name string) kubeclient.Interface {
	t.Helper()
	path, err := c.NodeKubeconfig(name)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubeclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// kubectlJSON runs kubectl as the admin and decodes its JSON output into out.
func kubectlJSON(ctx context.Context, t *testing.T, c *kubetb.Cluster, out any, args ...string) {
	t.Helper()
	s, err := c.Kubectl(ctx, append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
}

// ownTaints leaves out node.kubernetes.io/not-ready, which the API server's TaintNodesByCondition
// admission adds to every new Node and the node lifecycle controller (not running here) removes.
func ownTaints(taints []v1.Taint) []v1.Taint {
	var own []v1.Taint
	for _, t := range taints {
		if t.Key != v1.TaintNodeNotReady {
			own = append(own, t)
		}
	}
	return own
}

func findCondition(node *v1.Node, typ v1.NodeConditionType) (v1.NodeCondition, bool) {
	for _, c := range node.Status.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return v1.NodeCondition{}, false
}

// pollUntil calls check until it returns nil or the deadline passes; it returns check's last error.
func pollUntil(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestNodeAgainstRealAPIServer registers a node with a node's own credentials under the Node
// authorizer and NodeRestriction, and checks as the admin what kubectl users see: the Node
// Ready with the kubelet's conditions, a Lease that renews, the network turning Ready False;
// and that an existing Node (created by the admin, with a pod CIDR and a taint) is adopted
// with its spec kept.
func TestNodeAgainstRealAPIServer(t *testing.T) {
	c := startKubeTestbed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logger := logrus.New()
	logger.SetOutput(nodeTestLog{t})

	var mu sync.Mutex
	var networkErr error
	agent, err := NewNodeAgent(NodeConfig{
		Client:               nodeClient(t, c, "n1"),
		NodeName:             "n1",
		NodeIP:               "192.0.2.10",
		Hostname:             "n1",
		Labels:               map[string]string{"node.kubernetes.io/pool": "edge"},
		Taints:               []v1.Taint{{Key: "example.com/new", Effect: v1.TaintEffectNoSchedule}},
		RootDir:              t.TempDir(),
		NodeAPIPort:          10250,
		Version:              "v0.0.0-test",
		RuntimeVersion:       func(context.Context) (string, error) { return "containerd://2.1.0", nil },
		RuntimeReady:         func(context.Context) error { return nil },
		NetworkReady:         func() error { mu.Lock(); defer mu.Unlock(); return networkErr },
		Log:                  logrus.NewEntry(logger),
		StatusUpdateInterval: time.Second, // the transition below shows within seconds
	})
	if err != nil {
		t.Fatal(err)
	}
	registered, err := agent.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if registered.UID == "" {
		t.Errorf("Register returned a Node without a UID")
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		agent.Run(runCtx)
	}()
	defer func() { stopRun(); <-runDone }()

	var node v1.Node
	kubectlJSON(ctx, t, c, &node, "get", "node", "n1")
	if c, ok := findCondition(&node, v1.NodeReady); !ok || c.Status != v1.ConditionTrue || c.Reason != "KubeletReady" {
		t.Errorf("Ready = %+v, want True/KubeletReady", c)
	}
	for typ, reasons := range map[v1.NodeConditionType][]string{
		v1.NodeMemoryPressure:     {"KubeletHasSufficientMemory", "KubeletHasInsufficientMemory"},
		v1.NodeDiskPressure:       {"KubeletHasNoDiskPressure", "KubeletHasDiskPressure"},
		v1.NodePIDPressure:        {"KubeletHasSufficientPID", "KubeletHasInsufficientPID"},
		v1.NodeNetworkUnavailable: {"NodeagentNetworkReady"},
	} {
		if c, ok := findCondition(&node, typ); !ok || !strings.Contains(strings.Join(reasons, " "), c.Reason) {
			t.Errorf("%s = %+v, want one of the reasons %v", typ, c, reasons)
		}
	}
	for k, v := range map[string]string{"kubernetes.io/hostname": "n1", "kubernetes.io/os": runtime.GOOS,
		"kubernetes.io/arch": runtime.GOARCH, "node.kubernetes.io/pool": "edge"} {
		if node.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	if taints := ownTaints(node.Spec.Taints); len(taints) != 1 || taints[0].Key != "example.com/new" {
		t.Errorf("taints = %v, want the configured one", node.Spec.Taints)
	}
	for _, r := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory, v1.ResourcePods, v1.ResourceEphemeralStorage} {
		if q, ok := node.Status.Allocatable[r]; !ok || q.Sign() <= 0 {
			t.Errorf("allocatable %s = %v, want > 0", r, node.Status.Allocatable)
		}
	}
	if info := node.Status.NodeInfo; info.KubeletVersion != "v0.0.0-test" || info.ContainerRuntimeVersion != "containerd://2.1.0" ||
		info.BootID == "" || info.KernelVersion == "" || info.Architecture != runtime.GOARCH {
		t.Errorf("nodeInfo = %+v", info)
	}
	if len(node.Status.Addresses) != 2 || node.Status.Addresses[0].Address != "192.0.2.10" {
		t.Errorf("addresses = %v", node.Status.Addresses)
	}

	// The Lease exists, is owned by the Node, and renews (every 10 s by default).
	var first *coordinationv1.Lease
	if err := pollUntil(ctx, 10*time.Second, func() error {
		var l coordinationv1.Lease
		s, err := c.Kubectl(ctx, "get", "lease", "-n", "kube-node-lease", "n1", "-o", "json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			return err
		}
		first = &l
		return nil
	}); err != nil {
		t.Fatalf("no lease: %v", err)
	}
	if h := first.Spec.HolderIdentity; h == nil || *h != "n1" || first.Spec.LeaseDurationSeconds == nil || *first.Spec.LeaseDurationSeconds != 40 {
		t.Errorf("lease spec = %+v", first.Spec)
	}
	if refs := first.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Node" || refs[0].UID != registered.UID {
		t.Errorf("lease owners = %+v, want the Node", refs)
	}
	if err := pollUntil(ctx, 15*time.Second, func() error {
		var l coordinationv1.Lease
		kubectlJSON(ctx, t, c, &l, "get", "lease", "-n", "kube-node-lease", "n1")
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(first.Spec.RenewTime.Time) {
			return errors.New("renewTime has not moved")
		}
		return nil
	}); err != nil {
		t.Errorf("lease not renewed within 15 s: %v", err)
	}

	// The network going down shows as Ready False within a status tick.
	mu.Lock()
	networkErr = errors.New("no CNI configuration")
	mu.Unlock()
	if err := pollUntil(ctx, 10*time.Second, func() error {
		var n v1.Node
		kubectlJSON(ctx, t, c, &n, "get", "node", "n1")
		want := "container runtime network not ready: no CNI configuration"
		if c, _ := findCondition(&n, v1.NodeReady); c.Status != v1.ConditionFalse || c.Reason != "KubeletNotReady" || c.Message != want {
			return errors.New("Ready is " + string(c.Status) + "/" + c.Reason + ": " + c.Message)
		}
		return nil
	}); err != nil {
		t.Errorf("Ready did not turn False: %v", err)
	}

	t.Run("adopt", func(t *testing.T) {
		const existing = `apiVersion: v1
kind: Node
metadata: {name: n2, labels: {custom: keep}}
spec:
  podCIDR: 10.244.7.0/24
  podCIDRs: [10.244.7.0/24]
  taints: [{key: dedicated, value: db, effect: NoSchedule}]
`
		if _, err := c.KubectlAs(ctx, c.AdminKubeconfig, existing, "create", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		// Two InternalIPs: a patch merging addresses by type would leave a stale one.
		if _, err := c.Kubectl(ctx, "patch", "node", "n2", "--subresource=status", "--type=merge", "-p",
			`{"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.98"},{"type":"InternalIP","address":"192.0.2.99"}]}}`); err != nil {
			t.Fatal(err)
		}
		agent2, err := NewNodeAgent(NodeConfig{
			Client:   nodeClient(t, c, "n2"),
			NodeName: "n2",
			NodeIP:   "192.0.2.11",
			Labels:   map[string]string{"node.kubernetes.io/pool": "edge"},
			Taints:   []v1.Taint{{Key: "example.com/new", Effect: v1.TaintEffectNoSchedule}},
			RootDir:  t.TempDir(),
			Log:      logrus.NewEntry(logger),
		})
		if err != nil {
			t.Fatal(err)
		}
		adopted, err := agent2.Register(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if adopted.Spec.PodCIDR != "10.244.7.0/24" {
			t.Errorf("Register returned podCIDR %q", adopted.Spec.PodCIDR)
		}
		var n v1.Node
		kubectlJSON(ctx, t, c, &n, "get", "node", "n2")
		if taints := ownTaints(n.Spec.Taints); len(taints) != 1 || taints[0].Key != "dedicated" {
			t.Errorf("taints = %v, want the admin's only", n.Spec.Taints)
		}
		if n.Labels["custom"] != "keep" || n.Labels["node.kubernetes.io/pool"] != "edge" || n.Labels["kubernetes.io/hostname"] != "n2" {
			t.Errorf("labels = %v", n.Labels)
		}
		if c, ok := findCondition(&n, v1.NodeReady); !ok || c.Status != v1.ConditionTrue {
			t.Errorf("Ready = %+v", c)
		}
		if a := n.Status.Addresses; len(a) != 2 || a[0] != (v1.NodeAddress{Type: v1.NodeInternalIP, Address: "192.0.2.11"}) ||
			a[1] != (v1.NodeAddress{Type: v1.NodeHostName, Address: "n2"}) {
			t.Errorf("addresses = %v", n.Status.Addresses)
		}
	})
}
