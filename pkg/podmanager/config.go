package podmanager

import (
	"errors"
	v1 "k8s.io/api/core/v1"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/utils/clock"

	"github.com/nodeagent/nodeagent/pkg/podmanager/backoff"
)

// Config holds what the manager needs. Required fields are marked; the rest have defaults.
type Config struct {
	NodeName    string        // required: stamped on every sandbox so the agent finds its own
	NodeIP      string        // the pods' status.hostIP and the podIP of hostNetwork pods
	PodLogsDir  string        // root of the per-pod log directories; default /var/log/pods
	RuntimeName string        // prefix of containerIDs ("containerd://..."); default "containerd"
	Log         *logrus.Entry // required

	// Sources are the pod sources that must each report once before pods that no source
	// wants are terminated: until then, an empty desired set just means "not loaded yet".
	Sources []string

	// RelistPeriod is how often the runtime is listed to notice changes made behind the
	// agent's back. Runtime events (HandleContainerEvent) are the fast path; this is the
	// safety net. Default 30s.
	RelistPeriod time.Duration
	// ResyncPeriod re-runs every worker's sync even when nothing was noticed; default 60s.
	ResyncPeriod time.Duration

	// Backoff is the restart and image-pull backoff curve (default 10s doubling to 300s,
	// reset after 10m).
	Backoff backoff.Config

	// ResolvConf is the host's resolver file, used for dnsPolicy Default and ClusterFirst
	// (there is no cluster DNS yet); default /etc/resolv.conf.
	ResolvConf string

	// Prober runs the containers' health probes; nil runs none (tests of other things).
	Prober Prober
	// Volumes prepares pods' volumes; nil refuses pods that mount any.
	Volumes Volumes
	// Configs serves the ConfigMaps and Secrets that env and imagePullSecrets refer to;
	// default: none exist.
	Configs ConfigSource
	// Allocatable is the node's allocatable resources, which a resourceFieldRef to a limit
	// the container does not set reads (as with the kubelet); nil makes that an error.
	Allocatable v1.ResourceList
	// Network says whether the pod network is ready; pods that need it (all but hostNetwork
	// ones) get no sandbox until it is. Nil means always ready (the runtime's own CNI setup).
	Network Network

	// PodTerminated is told when a pod no source wants, or one being deleted
	// (deletionTimestamp set), has been terminated: its containers and sandbox are gone. The
	// API source then finishes the deletion. It must not block. Optional.
	PodTerminated func(pod *v1.Pod)
	// Events records Kubernetes events about pods (the API source's recorder); nil records
	// none.
	Events Recorder
	// StatusChanged is told that some pod's status changed, for the status reporter. It must
	// not block. Optional.
	StatusChanged func()

	// Metrics records the pod manager's Prometheus series (NewMetrics); nil records none.
	Metrics *Metrics

	// Clock is injected by tests; default the real clock.
	Clock clock.WithTicker
	// AllowedUnsafeSysctls are the sysctls (names, or prefixes ending in "*") pods may set
	// beyond the safe set; each must be namespaced (net.*, kernel.shm*, kernel.msg*,
	// kernel.sem, fs.mqueue.*). A pod asking for another is rejected with SysctlForbidden.
	AllowedUnsafeSysctls []string
	// KernelRelease is the node's kernel release (uname -r): a few safe sysctls are only
	// namespaced from some version on. Empty leaves those out.
	KernelRelease string
}

func (c *Config) setDefaults() error {
	if c.NodeName == "" {
		return errors.New("podmanager: NodeName is required")
	}
	if c.Log == nil {
		return errors.New("podmanager: Log is required")
	}
	if c.PodLogsDir == "" {
		c.PodLogsDir = "/var/log/pods"
	}
	if c.RuntimeName == "" {
		c.RuntimeName = "containerd"
	}
	if c.RelistPeriod <= 0 {
		c.RelistPeriod = 30 * time.Second
	}
	if c.ResyncPeriod <= 0 {
		c.ResyncPeriod = time.Minute
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.Configs == nil {
		c.Configs = noConfigs{}
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return nil
}

// runtimeRetry is how soon a worker retries after the runtime failed to answer (containerd
// restarting, a call timing out): short, because nothing about the pod itself is wrong.
const runtimeRetry = 2 * time.Second
