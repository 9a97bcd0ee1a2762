package controlplane

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
)

// Defaults of NodeConfig: the kubelet's.
const (
	DefaultMaxPods              = 110
	DefaultLeaseDuration        = 40 * time.Second
	DefaultLeaseRenewInterval   = 10 * time.Second
	DefaultStatusUpdateInterval = 10 * time.Second
	DefaultStatusReportInterval = 5 * time.Minute
)

// nodeRequestTimeout bounds each step's calls to the API server and the runtime, so that a
// connection that hangs (an outage that drops packets) ends in a retry rather than a stall.
const nodeRequestTimeout = 10 * time.Second

// The retry backoff after a failed step. Its cap stays well under the lease duration, so an
// API server that comes back is heard from within seconds, and the jitter spreads a fleet's
// retries after a control plane restart.
var nodeRetryBackoff = wait.Backoff{
	Duration: 500 * time.Millisecond,
	Factor:   2,
	Jitter:   0.5,
	Steps:    math.MaxInt32,
	Cap:      7 * time.Second,
}

// NodeConfig configures a NodeAgent. Client, NodeName and Log are required.
type NodeConfig struct {
	// Client talks to the API server with the node's own credentials (user
	// system:node:<NodeName>): everything here is designed with the verbs the Node authorizer
	// and NodeRestriction allow it: create and get its Node, patch its Node's status, get,
	// create and update its Lease.
	Client   kubeclient.Interface
	NodeName string
	// NodeIP is the InternalIP address. Optional: without it the Node has no InternalIP.
	NodeIP string
	// Hostname is the Hostname address and the kubernetes.io/hostname label, lowercased as
	// the kubelet does. Default NodeName.
	Hostname string
	// Labels are added to the Node's (--node-labels), at registration. Labels in the
	// kubernetes.io and k8s.io namespaces are refused unless NodeRestriction lets a node set
	// them (kubelet.kubernetes.io/*, node.kubernetes.io/*, and the well-known topology, OS and
	// instance-type labels), as the kubelet refuses them.
	Labels map[string]string
	// Taints are set when the agent creates the Node (--register-with-taints); an existing
	// Node keeps its own. NodeRestriction forbids a node to change taints afterwards.
	Taints []v1.Taint
	// MaxPods is the "pods" capacity. Default DefaultMaxPods.
	MaxPods int
	// SystemReserved and KubeReserved are subtracted from capacity to give allocatable;
	// a resource never goes below zero.
	SystemReserved, KubeReserved v1.ResourceList
	// RootDir is the agent's state directory: ephemeral-storage capacity and the DiskPressure
	// condition come from its filesystem. Required.
	RootDir string
	// NodeAPIPort is status.daemonEndpoints.kubeletEndpoint.port; 0 leaves it out.
	NodeAPIPort int32
	// Version is status.nodeInfo.kubeletVersion: the agent's version.
	Version string
	// RuntimeVersion is nodeInfo.containerRuntimeVersion, e.g. "containerd://2.1.0". When it
	// fails the last value read stays. Optional.
	RuntimeVersion func(ctx context.Context) (string, error)
	// RuntimeReady returns nil when the container runtime answers; otherwise the Node is
	// NotReady with the error in the Ready condition's message. Optional: nil means ready.
	RuntimeReady func(ctx context.Context) error
	// NetworkReady returns nil when the pod network is ready. When set, the agent owns the
	// NetworkUnavailable condition and Ready is False while the network is not ready. Optional.
	NetworkReady func() error
	// Machine reads the host. Default HostMachine().
	Machine Machine
	// Log receives the agent's logs. Required.
	Log *logrus.Entry
	// Clock decides the lease and status cadences and the times written. Default the real one.
	Clock clock.WithTicker

	// LeaseDuration is the Lease's leaseDurationSeconds. Default DefaultLeaseDuration.
	LeaseDuration time.Duration
	// LeaseRenewInterval is the time between two renewals. Default DefaultLeaseRenewInterval.
	LeaseRenewInterval time.Duration
	// StatusUpdateInterval is how often the status is recomputed; it is patched only when it
	// changed (heartbeat times aside). Default DefaultStatusUpdateInterval.
	StatusUpdateInterval time.Duration
	// StatusReportInterval is the longest time between two status patches, changed or not.
	// Default DefaultStatusReportInterval.
	StatusReportInterval time.Duration
}

// NodeAgent keeps this node's Node object and Lease in the API server, as the kubelet does.
// Create it with NewNodeAgent, call Register, then Run; never the two at once.
type NodeAgent struct {
	client         kubeclient.Interface
	name           string
	nodeIP         string
	hostname       string
	labels         map[string]string // all the labels the agent sets: its own and cfg.Labels
	taints         []v1.Taint
	maxPods        int
	reserved       v1.ResourceList // SystemReserved + KubeReserved
	rootDir        string
	apiPort        int32
	version        string
	runtimeVersion func(ctx context.Context) (string, error)
	runtimeReady   func(ctx context.Context) error
	networkReady   func() error
	machine        Machine
	log            *logrus.Entry
	clock          clock.WithTicker
	leaseDuration  time.Duration
	leaseRenew     time.Duration
	statusUpdate   time.Duration
	statusReport   time.Duration

	mu         sync.Mutex
	registered bool      // Register succeeded; guarded by mu
	nodeUID    types.UID // of the Node as last registered or patched; guarded by mu; the Lease's owner

	// The status side's state: Register's, then Run's status goroutine's only.
	info        *MachineInfo           // read once, at the first registration attempt
	readings    hostReadings           // the last good host readings
	readLogs    map[string]*problemLog // per reading: its failures
	posted      *v1.NodeStatus         // the status last written, with zero condition times
	postedAt    time.Time              // when posted was written
	lastRuntime string                 // the last containerRuntimeVersion read
	registerLog *problemLog            // registration failures
	statusLog   *problemLog            // status patch failures

	// The lease side's state: Run's lease goroutine's only.
	lease    leaseState
	leaseLog *problemLog // lease renewal failures
}

// NewNodeAgent checks cfg and returns an agent ready to Register.
func NewNodeAgent(cfg NodeConfig) (*NodeAgent, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("node: Client is required")
	case cfg.NodeName == "":
		return nil, errors.New("node: NodeName is required")
	case cfg.Log == nil:
		return nil, errors.New("node: Log is required")
	case cfg.RootDir == "":
		return nil, errors.New("node: RootDir is required")
	case cfg.MaxPods < 0:
		return nil, fmt.Errorf("node: MaxPods must not be negative, got %d", cfg.MaxPods)
	case cfg.NodeAPIPort < 0:
		return nil, fmt.Errorf("node: NodeAPIPort must not be negative, got %d", cfg.NodeAPIPort)
	case cfg.LeaseDuration < 0 || cfg.LeaseRenewInterval < 0 || cfg.StatusUpdateInterval < 0 || cfg.StatusReportInterval < 0:
		return nil, errors.New("node: lease and status intervals must not be negative")
	}
	if msgs := validation.IsDNS1123Subdomain(cfg.NodeName); len(msgs) > 0 {
		return nil, fmt.Errorf("node: node name %q: %s", cfg.NodeName, msgs[0])
	}
	if cfg.NodeIP != "" && net.ParseIP(cfg.NodeIP) == nil {
		return nil, fmt.Errorf("node: node IP %q is not an IP address", cfg.NodeIP)
	}
	n := &NodeAgent{
		client:         cfg.Client,
		name:           cfg.NodeName,
		nodeIP:         cfg.NodeIP,
		hostname:       cfg.Hostname,
		taints:         cfg.Taints,
		maxPods:        cfg.MaxPods,
		reserved:       addResources(cfg.SystemReserved, cfg.KubeReserved),
		rootDir:        cfg.RootDir,
		apiPort:        cfg.NodeAPIPort,
		version:        cfg.Version,
		runtimeVersion: cfg.RuntimeVersion,
		runtimeReady:   cfg.RuntimeReady,
		networkReady:   cfg.NetworkReady,
		machine:        cfg.Machine,
		log:            cfg.Log.WithField("node", cfg.NodeName),
		clock:          cfg.Clock,
		leaseDuration:  cfg.LeaseDuration,
		leaseRenew:     cfg.LeaseRenewInterval,
		statusUpdate:   cfg.StatusUpdateInterval,
		statusReport:   cfg.StatusReportInterval,
	}
	n.registerLog = newProblemLog(n.log, "node registration")
	n.statusLog = newProblemLog(n.log, "node status update")
	n.leaseLog = newProblemLog(n.log, "node lease renewal")
	if n.hostname == "" {
		n.hostname = n.name
	}
	n.hostname = strings.ToLower(n.hostname)
	if n.maxPods == 0 {
		n.maxPods = DefaultMaxPods
	}
	if n.machine == nil {
		n.machine = HostMachine()
	}
	if n.clock == nil {
		n.clock = clock.RealClock{}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&n.leaseDuration, DefaultLeaseDuration},
		{&n.leaseRenew, DefaultLeaseRenewInterval},
		{&n.statusUpdate, DefaultStatusUpdateInterval},
		{&n.statusReport, DefaultStatusReportInterval},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if n.leaseDuration < time.Second {
		return nil, fmt.Errorf("node: LeaseDuration must be at least 1s, got %v", n.leaseDuration)
	}
	labels, err := nodeLabels(n.hostname, cfg.Labels)
	if err != nil {
		return nil, err
	}
	n.labels = labels
	for _, t := range cfg.Taints {
		if err := validateTaint(t); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// betaLabelOS and betaLabelArch are the deprecated forms the kubelet still sets, which old
// node selectors match.
const (
	betaLabelOS   = "beta.kubernetes.io/os"
	betaLabelArch = "beta.kubernetes.io/arch"
)

// nodeLabels returns the labels the kubelet sets on its Node, plus extra.
func nodeLabels(hostname string, extra map[string]string) (map[string]string, error) {
	labels := map[string]string{}
	for k, v := range extra {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return nil, fmt.Errorf("node: label key %q: %s", k, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			return nil, fmt.Errorf("node: label %s value %q: %s", k, v, msgs[0])
		}
		if !nodeMaySetLabel(k) {
			return nil, fmt.Errorf("node: label %q is in the kubernetes.io or k8s.io namespace, which NodeRestriction "+
				"forbids a node to set; allowed there are the kubelet.kubernetes.io and node.kubernetes.io prefixes "+
				"and the well-known topology, OS and instance-type labels", k)
		}
		labels[k] = v
	}
	if msgs := validation.IsValidLabelValue(hostname); len(msgs) > 0 {
		return nil, fmt.Errorf("node: hostname %q as label %s: %s", hostname, v1.LabelHostname, msgs[0])
	}
	for k, v := range map[string]string{
		v1.LabelHostname:   hostname,
		v1.LabelOSStable:   runtime.GOOS,
		v1.LabelArchStable: runtime.GOARCH,
		betaLabelOS:        runtime.GOOS,
		betaLabelArch:      runtime.GOARCH,
	} {
		labels[k] = v
	}
	return labels, nil
}

// nodeMaySetLabel mirrors NodeRestriction's rule (and the kubelet's flag check): in the
// kubernetes.io and k8s.io namespaces a node may set only the well-known labels and those
// under kubelet.kubernetes.io and node.kubernetes.io.
func nodeMaySetLabel(key string) bool {
	prefix, _, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		return true
	}
	ns := strings.ToLower(prefix)
	reserved := func(domain string) bool { return ns == domain || strings.HasSuffix(ns, "."+domain) }
	if !reserved("kubernetes.io") && !reserved("k8s.io") {
		return true
	}
	switch key {
	case v1.LabelHostname, v1.LabelTopologyZone, v1.LabelTopologyRegion, v1.LabelFailureDomainBetaZone,
		v1.LabelFailureDomainBetaRegion, v1.LabelInstanceType, v1.LabelInstanceTypeStable, v1.LabelOSStable,
		v1.LabelArchStable, betaLabelOS, betaLabelArch:
		return true
	}
	return reserved(v1.LabelNamespaceSuffixKubelet) || reserved(v1.LabelNamespaceSuffixNode)
}

func validateTaint(t v1.Taint) error {
	if msgs := validation.IsQualifiedName(t.Key); len(msgs) > 0 {
		return fmt.Errorf("node: taint key %q: %s", t.Key, msgs[0])
	}
	if msgs := validation.IsValidLabelValue(t.Value); len(msgs) > 0 {
		return fmt.Errorf("node: taint %s value %q: %s", t.Key, t.Value, msgs[0])
	}
	switch t.Effect {
	case v1.TaintEffectNoSchedule, v1.TaintEffectPreferNoSchedule, v1.TaintEffectNoExecute:
		return nil
	}
	return fmt.Errorf("node: taint %s: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", t.Key, t.Effect)
}

// Register creates this node's Node object, or adopts the one of that name: it adds its
// labels and writes its status, but keeps the Node's spec (podCIDR, taints, unschedulable)
// and does not add the configured taints to it. It retries with backoff and jitter, logging
// each distinct error once, until it succeeds or ctx ends (then it returns ctx's error). It
// returns the Node as stored: the caller reads spec.podCIDR(s) from it.
func (n *NodeAgent) Register(ctx context.Context) (*v1.Node, error) {
	b := nodeRetryBackoff
	for {
		node, err := n.registerOnce(ctx)
		if err == nil {
			n.registerLog.resolved()
			n.log.WithField("uid", node.UID).Info("node registered")
			return node, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("register node %s: %w", n.name, ctx.Err())
		}
		n.registerLog.failed(err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("register node %s: %w", n.name, ctx.Err())
		case <-n.clock.After(b.Step()):
		}
	}
}

// registerOnce is one attempt of Register.
func (n *NodeAgent) registerOnce(ctx context.Context) (*v1.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, nodeRequestTimeout)
	defer cancel()
	if n.info == nil {
		info, err := n.machine.Info()
		if err != nil {
			// Partial identity is better than no node: report it and go on.
			n.log.WithError(err).Warn("some host identity is unreadable; nodeInfo leaves it empty")
		}
		n.info = &info
	}
	now := n.clock.Now()
	want := n.desiredStatus(ctx)
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.labels},
		Spec:       v1.NodeSpec{Taints: n.taints},
	}
	applyStatus(node, want, now)
	created, err := n.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err == nil {
		n.stored(created, want, now)
		return created, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create node %s: %w", n.name, err)
	}
	existing, err := n.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get existing node %s: %w", n.name, err)
	}
	adopted := existing.DeepCopy()
	if adopted.Labels == nil {
		adopted.Labels = map[string]string{}
	}
	for k, v := range n.labels {
		adopted.Labels[k] = v
	}
	applyStatus(adopted, want, now)
	stored, err := n.patchStatus(ctx, existing, adopted)
	if err != nil {
		return nil, fmt.Errorf("adopt existing node %s: %w", n.name, err)
	}
	n.stored(stored, want, now)
	return stored, nil
}

// stored records that the API server holds node, with status want written at now.
func (n *NodeAgent) stored(node *v1.Node, want v1.NodeStatus, now time.Time) {
	n.mu.Lock()
	n.registered = true
	n.nodeUID = node.UID
	n.mu.Unlock()
	n.posted, n.postedAt = &want, now
}

// UID is the UID of the Node as last registered or patched; "" before Register. It changes
// when the Node was deleted and Run registered it again.
func (n *NodeAgent) UID() types.UID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodeUID
}

// ownerRef is the Lease's reference to the Node, once registered.
func (n *NodeAgent) ownerRef() (metav1.OwnerReference, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: n.name, UID: n.nodeUID}, n.nodeUID != ""
}

// Run keeps the Node's Lease renewed and its status current until ctx ends; it registers
// the Node first if Register has not. API server outages never end it: each loop retries
// with backoff and jitter and logs one line per distinct problem, and one when it is over.
//
//	lease goroutine:  renewLease ─ok─> wait LeaseRenewInterval ─> renewLease ...
//	                             └err─> wait backoff (0.5 s doubling to 7 s, ±jitter)
//	status goroutine: syncStatus ─ok─> wait StatusUpdateInterval ─> syncStatus ...
//	                             └err─> wait backoff
//
// The two are separate so that a slow host reading or runtime call never delays the Lease.
func (n *NodeAgent) Run(ctx context.Context) {
	n.mu.Lock()
	registered := n.registered
	n.mu.Unlock()
	if !registered {
		if _, err := n.Register(ctx); err != nil {
			return // only when ctx ended
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { n.loop(ctx, n.leaseRenew, n.leaseLog, n.renewLease) })
	wg.Go(func() { n.loop(ctx, n.statusUpdate, n.statusLog, n.syncStatus) })
	wg.Wait()
}

// loop runs step now and then every interval, or after a backoff when it failed.
func (n *NodeAgent) loop(ctx context.Context, interval time.Duration, problems *problemLog, step func(context.Context) error) {
	b := nodeRetryBackoff
	for {
		stepCtx, cancel := context.WithTimeout(ctx, nodeRequestTimeout)
		err := step(stepCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		wait := interval
		if err != nil {
			problems.failed(err)
			wait = b.Step()
		} else {
			problems.resolved()
			b = nodeRetryBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-n.clock.After(wait):
		}
	}
}

// problemLog logs a repeating failure once per distinct error, and its end once, so an
// outage gives a few lines rather than one per retry. Not safe for concurrent use: each
// loop has its own.
type problemLog struct {
	log  *logrus.Entry
	what string
	last string // the error last logged; "" when there is no problem
}

func newProblemLog(log *logrus.Entry, what string) *problemLog {
	return &problemLog{log: log, what: what}
}

// failed logs err unless it reads the same as the one logged before it.
func (p *problemLog) failed(err error) {
	if msg := err.Error(); msg != p.last {
		p.last = msg
		p.log.WithError(err).Warn(p.what + " failed; retrying")
	}
}

// resolved logs that the problem is over, if there was one.
func (p *problemLog) resolved() {
	if p.last != "" {
		p.last = ""
		p.log.Info(p.what + " works again")
	}
}
