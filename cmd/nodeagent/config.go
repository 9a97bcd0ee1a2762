package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/nodeagent/nodeagent/pkg/network"
	"github.com/nodeagent/nodeagent/pkg/server"
)

// config is the agent's configuration. Every flag is also a key of the same name in the YAML
// file given by --config; a flag given on the command line wins over the file, the file over
// the default.
type config struct {
	NodeName        string
	NodeIP          string
	RootDir         string
	RuntimeEndpoint string
	PodManifestPath string
	PodLogsDir      string
	DebugAddress    string
	DebugTokenFile  string

	// ManifestMaxBytes caps one manifest file: a size (1Mi, 1048576) that validate parses.
	ManifestMaxBytes string

	ContainerLogMaxSize         string
	ContainerLogMaxFiles        int
	ContainerLogMonitorInterval time.Duration
	LogLevel                    string
	LogFormat                   string

	RuntimeEvents         string
	RelistPeriod          time.Duration
	RestartBackoffInitial time.Duration
	RestartBackoffMax     time.Duration
	RestartBackoffReset   time.Duration

	PodCIDR        string
	CNIConfig      string
	CNIBinDirs     []string
	CNIBridge      string
	CNINetworkName string
	CNIStateDir    string
	CNISocket      string
	CNICheckPeriod time.Duration
	CNIGCPeriod    time.Duration

	// PodCIDRGiven: --pod-cidr was set on the command line or in the file. Without it, a
	// node of a control plane takes its Node's spec.podCIDRs.
	PodCIDRGiven bool

	Kubeconfig         string
	NodeLabels         map[string]string
	RegisterWithTaints []string
	MaxPods            int
	// AllowedUnsafeSysctls: sysctls beyond the safe set pods may set (names or "prefix*").
	AllowedUnsafeSysctls []string
	SystemReserved       map[string]string
	KubeReserved         map[string]string
	NodeAPI              nodeAPIConfig
}

func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return strings.ToLower(h)
}

// flagSet registers every configuration key on a fresh flag set bound to cfg.
func flagSet(cfg *config) *pflag.FlagSet {
	fs := pflag.NewFlagSet("nodeagent", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&cfg.NodeName, "node-name", defaultNodeName(), "name of this node (default: the host name, lower-cased)")
	fs.StringVar(&cfg.NodeIP, "node-ip", "", "the node's IP address, reported as the pods' hostIP (default: the address of the default route's interface)")
	fs.StringVar(&cfg.RootDir, "root-dir", "/var/lib/nodeagent", "directory for the agent's per-pod files")
	fs.StringVar(&cfg.RuntimeEndpoint, "runtime-endpoint", "unix:///run/containerd/containerd.sock", "CRI endpoint of the container runtime")
	fs.StringVar(&cfg.PodManifestPath, "pod-manifest-path", "", "directory of Pod manifests to run (the file source); empty disables it")
	fs.StringVar(&cfg.ManifestMaxBytes, "manifest-max-bytes", "1Mi", "largest manifest file read (1Mi, 1048576); a larger file is an error and its pods are removed")
	fs.StringVar(&cfg.PodLogsDir, "pod-logs-dir", "/var/log/pods", "root of the per-pod container log directories")
	fs.StringVar(&cfg.DebugAddress, "debug-address", "127.0.0.1:10248", "address of the debug HTTP server (/healthz, /readyz, /metrics, /pods, /debug/)")
	fs.StringVar(&cfg.DebugTokenFile, "debug-token-file", "", "file holding the bearer token the debug server requires; needed for a non-loopback --debug-address")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&cfg.RuntimeEvents, "runtime-events", "auto", "where container events come from: auto (CRI events, else containerd's event service), cri, or containerd")
	fs.DurationVar(&cfg.RelistPeriod, "relist-period", 30*time.Second, "how often the runtime is listed as a safety net behind its events")
	fs.DurationVar(&cfg.RestartBackoffInitial, "restart-backoff-initial", 10*time.Second, "wait before the second restart of a crashing container (the first is immediate)")
	fs.DurationVar(&cfg.RestartBackoffMax, "restart-backoff-max", 300*time.Second, "cap of the doubling restart wait")
	fs.DurationVar(&cfg.RestartBackoffReset, "restart-backoff-reset", 10*time.Minute, "running this long without a failure resets the restart wait")
	fs.StringVar(&cfg.PodCIDR, "pod-cidr", "10.88.0.0/16", "the node's pod address range for the generated network (one CIDR per family, comma-separated)")
	fs.StringVar(&cfg.CNIConfig, "cni-config", "", "a CNI network list (.conflist) to run instead of the generated bridge network")
	fs.StringSliceVar(&cfg.CNIBinDirs, "cni-bin-dir", []string{"/opt/cni/bin"}, "directories holding the CNI plugin binaries (comma-separated)")
	fs.StringVar(&cfg.CNIBridge, "cni-bridge", network.DefaultBridge, "bridge of the generated network")
	fs.StringVar(&cfg.CNINetworkName, "cni-network-name", network.DefaultNetworkName, "name of the generated network (CNI keys its caches and iptables comments by it)")
	fs.StringVar(&cfg.CNIStateDir, "cni-state-dir", "", "the node network's state (saved list, result cache, address leases); default <root-dir>/cni. The delegate's stateDir must match")
	fs.StringVar(&cfg.CNISocket, "cni-socket", network.DefaultSocket, "unix socket the CNI delegate reaches the agent on (root only). The delegate's socket must match")
	fs.DurationVar(&cfg.CNICheckPeriod, "cni-check-period", network.DefaultCheckPeriod, "how often running pods' networks get a CNI CHECK; 0 disables it")
	fs.DurationVar(&cfg.CNIGCPeriod, "cni-gc-period", network.DefaultGCPeriod, "how often addresses no live sandbox holds are freed (CNI GC); it also runs at start")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig with the node's credentials: join that Kubernetes cluster as node --node-name (empty: no control plane)")
	fs.StringToStringVar(&cfg.NodeLabels, "node-labels", nil, "labels added to the Node at registration (key=value,...)")
	fs.StringSliceVar(&cfg.AllowedUnsafeSysctls, "allowed-unsafe-sysctls", nil, "unsafe sysctls (names, or prefixes ending in '*', comma-separated) pods may set beyond the safe set; each must be namespaced (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)")
	fs.StringSliceVar(&cfg.RegisterWithTaints, "register-with-taints", nil, "taints the Node is created with (key=value:Effect,...)")
	fs.IntVar(&cfg.MaxPods, "max-pods", 110, "the Node's pod capacity")
	fs.StringToStringVar(&cfg.SystemReserved, "system-reserved", nil, "resources reserved for the system, subtracted from allocatable (cpu=100m,memory=256Mi,ephemeral-storage=1Gi)")
	fs.StringToStringVar(&cfg.KubeReserved, "kube-reserved", nil, "resources reserved for the agent and the runtime, subtracted from allocatable")
	registerNodeAPIFlags(fs, &cfg.NodeAPI)
	fs.StringVar(&cfg.ContainerLogMaxSize, "container-log-max-size", "10Mi", "a running container's log file is rotated once larger than this (10Mi, 64Ki)")
	fs.IntVar(&cfg.ContainerLogMaxFiles, "container-log-max-files", 5, "log files kept per container, the current one included; at least 2")
	fs.DurationVar(&cfg.ContainerLogMonitorInterval, "container-log-monitor-interval", 10*time.Second, "how often container log files are checked for rotation")
	return fs
}

// loadConfig parses args, then fills every flag not given on the command line from the
// config file, if any. Values from the file go through the same flag parsers, so a bad value
// is reported with its key either way.
func loadConfig(args []string) (*config, error) {
	cfg := &config{}
	fs := flagSet(cfg)
	var file string
	fs.StringVar(&file, "config", "", "YAML configuration file; its keys are the flag names")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if file != "" {
		if err := applyFile(fs, file); err != nil {
			return nil, err
		}
	}
	cfg.PodCIDRGiven = fs.Changed("pod-cidr")
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func applyFile(fs *pflag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("config file %s: not valid YAML: %w", path, err)
	}
	var values map[string]any
	if err := json.Unmarshal(jsonData, &values); err != nil {
		return fmt.Errorf("config file %s: must be a mapping of keys to values: %w", path, err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return fmt.Errorf("config file %s: unknown key %q", path, key)
		}
		if f.Changed {
			continue // the command line wins
		}
		var s string
		switch v := values[key].(type) {
		case string:
			s = v
		case float64, bool:
			s = fmt.Sprint(v)
		case map[string]any:
			if f.Value.Type() != "stringToString" {
				return fmt.Errorf("config file %s: key %q: want a single value, got a mapping", path, key)
			}
			// A YAML mapping for a key=value flag (node-labels, system-reserved).
			pairs := make([]string, 0, len(v))
			for k, e := range v {
				pairs = append(pairs, fmt.Sprintf("%s=%v", k, e))
			}
			sort.Strings(pairs)
			s = strings.Join(pairs, ",")
		case []any:
			if f.Value.Type() != "stringSlice" {
				return fmt.Errorf("config file %s: key %q: want a single value, got a list", path, key)
			}
			// A YAML list for a list flag (cni-bin-dir): the flag's own comma syntax.
			parts := make([]string, 0, len(v))
			for _, e := range v {
				str, ok := e.(string)
				if !ok {
					return fmt.Errorf("config file %s: key %q: list items must be strings, got %T", path, key, e)
				}
				parts = append(parts, str)
			}
			s = strings.Join(parts, ",")
		case nil:
			continue
		default:
			return fmt.Errorf("config file %s: key %q: want a single value, got %T", path, key, v)
		}
		// Through the flag set, so the flag counts as given (podCIDRGiven reads that).
		if err := fs.Set(key, s); err != nil {
			return fmt.Errorf("config file %s: key %q: %w", path, key, err)
		}
	}
	return nil
}

// validate checks values a flag parser cannot, naming the key.
func (c *config) validate() error {
	if c.NodeName == "" {
		return fmt.Errorf("node-name: must not be empty (the host name could not be read)")
	}
	if c.NodeIP != "" && net.ParseIP(c.NodeIP) == nil {
		return fmt.Errorf("node-ip: %q is not an IP address", c.NodeIP)
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log-level: %q is not a level (trace, debug, info, warn, error)", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log-format: %q must be text or json", c.LogFormat)
	}
	if _, _, err := net.SplitHostPort(c.DebugAddress); err != nil {
		return fmt.Errorf("debug-address: %q is not host:port: %v", c.DebugAddress, err)
	}
	// The debug server shows pod specs (their env included) and a profiler: off loopback,
	// only to holders of the token.
	if !server.IsLoopback(c.DebugAddress) && c.DebugTokenFile == "" {
		return fmt.Errorf("debug-address: %q is not a loopback address; serving debug endpoints there needs --debug-token-file", c.DebugAddress)
	}
	if c.DebugTokenFile != "" {
		if _, err := c.debugToken(); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(c.RuntimeEndpoint, "unix://") && !strings.HasPrefix(c.RuntimeEndpoint, "/") {
		return fmt.Errorf("runtime-endpoint: %q must be unix:///path/to/socket", c.RuntimeEndpoint)
	}
	if _, err := cri.ParseEventsMode(c.RuntimeEvents); err != nil {
		return fmt.Errorf("runtime-events: %v", err)
	}
	for key, d := range map[string]time.Duration{
		"relist-period": c.RelistPeriod, "restart-backoff-initial": c.RestartBackoffInitial,
		"restart-backoff-max": c.RestartBackoffMax, "restart-backoff-reset": c.RestartBackoffReset,
	} {
		if d <= 0 {
			return fmt.Errorf("%s: %s must be positive", key, d)
		}
	}
	if c.RestartBackoffMax < c.RestartBackoffInitial {
		return fmt.Errorf("restart-backoff-max: %s is less than restart-backoff-initial %s", c.RestartBackoffMax, c.RestartBackoffInitial)
	}
	if c.MaxPods <= 0 {
		return fmt.Errorf("max-pods: %d must be positive", c.MaxPods)
	}
	if err := c.NodeAPI.validate(); err != nil {
		return err
	}
	if _, err := logs.ParseSize(c.ManifestMaxBytes); err != nil {
		return fmt.Errorf("manifest-max-bytes: %v", err)
	}
	if _, err := logs.ParseSize(c.ContainerLogMaxSize); err != nil {
		return fmt.Errorf("container-log-max-size: %v", err)
	}
	if c.ContainerLogMaxFiles < 2 {
		return fmt.Errorf("container-log-max-files: %d must be at least 2 (the current file counts as one)", c.ContainerLogMaxFiles)
	}
	if c.ContainerLogMonitorInterval <= 0 {
		return fmt.Errorf("container-log-monitor-interval: %s must be positive", c.ContainerLogMonitorInterval)
	}
	if _, err := c.taints(); err != nil {
		return err
	}
	for key, m := range map[string]map[string]string{"system-reserved": c.SystemReserved, "kube-reserved": c.KubeReserved} {
		if _, err := resourceList(key, m); err != nil {
			return err
		}
	}
	if c.CNIGCPeriod <= 0 {
		return fmt.Errorf("cni-gc-period: %s must be positive", c.CNIGCPeriod)
	}
	if c.CNICheckPeriod < 0 {
		return fmt.Errorf("cni-check-period: %s must not be negative", c.CNICheckPeriod)
	}
	if c.CNIStateDir == "" {
		c.CNIStateDir = filepath.Join(c.RootDir, "cni")
	}
	for _, d := range c.CNIBinDirs {
		if !strings.HasPrefix(d, "/") {
			return fmt.Errorf("cni-bin-dir: %q must be an absolute path", d)
		}
	}
	// In order: cni-state-dir defaults from root-dir, whose error is the one to report.
	for _, kv := range [][2]string{{"root-dir", c.RootDir}, {"pod-logs-dir", c.PodLogsDir}, {"cni-state-dir", c.CNIStateDir}, {"cni-socket", c.CNISocket}} {
		key, dir := kv[0], kv[1]
		if dir == "" || !strings.HasPrefix(dir, "/") {
			return fmt.Errorf("%s: %q must be an absolute path", key, dir)
		}
	}
	return nil
}

// newLogger builds the logger from the validated config.
func (c *config) newLogger() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	lvl, _ := logrus.ParseLevel(c.LogLevel)
	log.SetLevel(lvl)
	if c.LogFormat == "json" {
		// Nanosecond timestamps: event latencies are read off the log.
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	// Under journald: a priority prefix per line, and no timestamp on text lines (the
	// journal has its own).
	if stderrIsJournal() {
		log.SetFormatter(newJournalFormatter(log.Formatter))
	}
	return log
}

// taints parses --register-with-taints: key=value:Effect or key:Effect.
func (c *config) taints() ([]v1.Taint, error) {
	var out []v1.Taint
	for _, t := range c.RegisterWithTaints {
		kv, effect, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fmt.Errorf("register-with-taints: %q must be key=value:Effect", t)
		}
		key, value, _ := strings.Cut(kv, "=")
		switch v1.TaintEffect(effect) {
		case v1.TaintEffectNoSchedule, v1.TaintEffectPreferNoSchedule, v1.TaintEffectNoExecute:
		default:
			return nil, fmt.Errorf("register-with-taints: %q: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", t, effect)
		}
		if key == "" {
			return nil, fmt.Errorf("register-with-taints: %q has no key", t)
		}
		out = append(out, v1.Taint{Key: key, Value: value, Effect: v1.TaintEffect(effect)})
	}
	return out, nil
}

// resourceList parses a reservation like cpu=100m,memory=256Mi, naming the key on error.
func resourceList(key string, m map[string]string) (v1.ResourceList, error) {
	out := v1.ResourceList{}
	for name, q := range m {
		switch v1.ResourceName(name) {
		case v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage, v1.ResourcePods:
		default:
			return nil, fmt.Errorf("%s: unknown resource %q (cpu, memory, ephemeral-storage, pods)", key, name)
		}
		v, err := resource.ParseQuantity(q)
		if err != nil {
			return nil, fmt.Errorf("%s: %s=%q: %v", key, name, q, err)
		}
		out[v1.ResourceName(name)] = v
	}
	return out, nil
}

// debugToken reads --debug-token-file (see readTokenFile).
func (c *config) debugToken() (string, error) { return readTokenFile(c.DebugTokenFile) }
