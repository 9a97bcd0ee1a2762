package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/sirupsen/logrus"
)

// DefaultNetworkName is the name of the generated node network; libcni and host-local key
// their state by it.
const DefaultNetworkName = "nodeagent"

var errWaitingPodCIDR = errors.New("waiting for the Node's spec.podCIDR from the API server")

// Service defaults.
const (
	DefaultCheckPeriod = time.Minute
	DefaultGCPeriod    = 10 * time.Minute
	// retryPeriod is how often a network that is not ready yet is validated again.
	retryPeriod = 5 * time.Second
)

// Sandbox is what the service needs to know of one pod sandbox in the runtime.
type Sandbox struct {
	ID     string
	PodUID string
	Ready  bool
	// Mine is true for sandboxes of this agent's node: only those are CHECKed.
	Mine bool
}

// ServiceConfig configures NewService.
type ServiceConfig struct {
	// ConfigFile is a user-supplied network list (.conflist). Empty means the generated
	// default list (DefaultConflist) on PodCIDR and Bridge.
	ConfigFile string
	PodCIDR    string
	Bridge     string
	// NetworkName names the generated list; empty means DefaultNetworkName.
	NetworkName string
	// NodePodCIDR, when set, delivers the pod CIDR(s) the control plane gave the Node
	// (spec.podCIDRs, comma-separated; "" if none): the generated list waits for it and uses
	// it instead of PodCIDR. The network is not ready until it arrives.
	NodePodCIDR <-chan string
	BinDirs     []string
	// StateDir is the node network's state directory (state.go); empty means DefaultStateDir.
	StateDir string
	// Socket is where the delegate reaches the agent; empty means DefaultSocket.
	Socket string

	CheckPeriod time.Duration // zero means DefaultCheckPeriod; negative disables CHECK
	GCPeriod    time.Duration // zero means DefaultGCPeriod; GC also runs once when ready

	// Sandboxes lists every pod sandbox in the runtime, for GC (all of them: any process on
	// the node may share the network) and CHECK (this node's).
	Sandboxes func(ctx context.Context) ([]Sandbox, error)
	// CheckFailed is told when a running pod's network fails CHECK. It must not block on a
	// pod worker (DESIGN.md decision 5): the pod manager only records it and wakes the worker.
	CheckFailed func(podUID, sandboxID string, err error)

	// Observe, when set, is told about every call the delegate forwarded once it is
	// answered: for the CNI metrics and the pod's timeline. It runs on the handler's
	// goroutine, inside containerd's RunPodSandbox or StopPodSandbox, so it must not block and
	// must not wait on anything a pod worker holds (DESIGN.md decision 5).
	Observe func(Call)

	Log *logrus.Entry
	// Runner holds the runner's optional knobs (tests set Exec and Commands); LockFile and
	// AttachmentDir are always the state directory's.
	Runner RunnerOptions
}

// Call describes one answered call of the delegate, for ServiceConfig.Observe.
type Call struct {
	Command   string // CNI_COMMAND: ADD, DEL, CHECK, STATUS, GC, VERSION
	SandboxID string // CNI_CONTAINERID; "" for calls about no sandbox (STATUS, GC)
	PodUID    string // K8S_POD_UID from CNI_ARGS; "" when containerd did not pass it
	Start     time.Time
	Took      time.Duration
	Err       error
}

// Service is the agent's side of pod networking: it serves the delegate's calls with the node
// network list, reports whether the network is ready, and runs the periodic GC and CHECK.
type Service struct {
	cfg      ServiceConfig
	conflist []byte // the list as configured; validated again until it loads
	log      *logrus.Entry

	mu       sync.Mutex
	runner   *Runner // nil until the list validates
	notReady error   // why the network is not ready; nil when it is
	lastLog  string  // the not-ready reason last logged, so each is logged once
}

// NewService reads or generates the network list and checks it as far as possible without
// executing anything. A list that can never work (ErrInvalidConfig: bad JSON, a missing
// field, an unsupported version, an unreadable file) is an error naming the file and the
// problem, and the agent should not start. Missing plugin binaries are not: the service starts
// not ready and keeps looking for them.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if cfg.NetworkName == "" {
		cfg.NetworkName = DefaultNetworkName
	}
	if cfg.CheckPeriod == 0 {
		cfg.CheckPeriod = DefaultCheckPeriod
	}
	if cfg.GCPeriod <= 0 {
		cfg.GCPeriod = DefaultGCPeriod
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	s := &Service{cfg: cfg, log: cfg.Log}
	if cfg.ConfigFile != "" {
		b, err := os.ReadFile(cfg.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --cni-config: %v", ErrInvalidConfig, err)
		}
		s.conflist = b
	} else {
		b, err := s.generate(cfg.PodCIDR)
		if err != nil {
			return nil, fmt.Errorf("generated network (pod-cidr, cni-bridge, cni-network-name): %w", err)
		}
		s.conflist = b
	}
	if _, err := LoadNetwork(s.conflist, cfg.BinDirs); err != nil && !errors.Is(err, ErrPluginNotFound) {
		return nil, s.describe(err)
	}
	s.notReady = errors.New("network list not validated yet")
	if cfg.NodePodCIDR != nil && cfg.ConfigFile == "" {
		s.notReady = errWaitingPodCIDR
	}
	return s, nil
}

// generate makes the default list on cidr, with the IPAM store under the state dir.
func (s *Service) generate(cidr string) ([]byte, error) {
	return DefaultConflist(s.cfg.NetworkName, cidr, s.cfg.Bridge, ConflistOptions{
		IPAMDataDir: filepath.Join(s.cfg.StateDir, "networks"),
	})
}

// usePodCIDR regenerates the default list on cidr.
func (s *Service) usePodCIDR(cidr string) error {
	b, err := s.generate(cidr)
	if err != nil {
		return err
	}
	if _, err := LoadNetwork(b, s.cfg.BinDirs); err != nil && !errors.Is(err, ErrPluginNotFound) {
		return err
	}
	s.conflist = b // read and written by the loop only
	s.log.WithField("podCIDR", cidr).Info("pod network uses the Node's spec.podCIDRs")
	return nil
}

// describe prefixes an error about the list with where the list came from.
func (s *Service) describe(err error) error {
	if s.cfg.ConfigFile != "" {
		return fmt.Errorf("--cni-config %s: %w", s.cfg.ConfigFile, err)
	}
	return err
}

// Ready is nil when the network list has validated (plugins installed and answering VERSION,
// STATUS ok), else why not. Pods that need the pod network wait until it is nil.
func (s *Service) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notReady
}

// Listen creates the delegate socket. The agent does it before anything else that could make
// containerd call the delegate, and refuses to start if it cannot.
func (s *Service) Listen() (net.Listener, error) {
	l, err := ListenDelegate(s.cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("cni-socket: %w", err)
	}
	s.log.WithField("socket", s.cfg.Socket).Info("CNI delegate socket listening")
	return l, nil
}

// Run serves the delegate on l and keeps the network healthy until ctx ends; it closes l.
func (s *Service) Run(ctx context.Context, l net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- ServeDelegate(ctx, l, s.handle) }()

	s.loop(ctx)
	return <-served
}

// retryUntil runs try every retryPeriod until it succeeds; false if ctx ends first.
func retryUntil(ctx context.Context, try func(context.Context) bool) bool {
	for !try(ctx) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(retryPeriod):
		}
	}
	return true
}

// loop validates the list until it is ready, then runs GC at once and periodically, and
// CHECK and STATUS every check period.
func (s *Service) loop(ctx context.Context) {
	if s.cfg.NodePodCIDR != nil && s.cfg.ConfigFile == "" {
		s.setNotReady(errWaitingPodCIDR)
		select {
		case <-ctx.Done():
			return
		case cidr := <-s.cfg.NodePodCIDR:
			if cidr != "" {
				if err := s.usePodCIDR(cidr); err != nil {
					// The Node's range does not fit (bad bridge name, say): stay on the
					// configured one, which validated at start.
					s.log.WithError(err).Error("cannot use the Node's spec.podCIDRs; keeping --pod-cidr")
				}
			}
		}
	}
	// The GC at start is the one that frees what a crash leaked: retry it until it has run
	// (the runtime may not be up yet).
	if !retryUntil(ctx, s.validate) || !retryUntil(ctx, s.gc) {
		return
	}

	gcTick := time.NewTicker(s.cfg.GCPeriod)
	defer gcTick.Stop()
	var checkC <-chan time.Time
	if s.cfg.CheckPeriod > 0 {
		t := time.NewTicker(s.cfg.CheckPeriod)
		defer t.Stop()
		checkC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-gcTick.C:
			s.gc(ctx)
		case <-checkC:
			s.status(ctx)
			s.check(ctx)
		}
	}
}

// validate loads the list, runs every plugin's VERSION and STATUS, and saves the list for the
// delegate. It reports whether the network is ready.
func (s *Service) validate(ctx context.Context) bool {
	n, err := LoadNetwork(s.conflist, s.cfg.BinDirs)
	var r *Runner
	if err == nil {
		opts := s.cfg.Runner
		opts.LockFile = LockFile(s.cfg.StateDir)
		opts.AttachmentDir = AttachmentDir(s.cfg.StateDir)
		r, err = NewRunner(n, CacheDir(s.cfg.StateDir), opts)
	}
	if err == nil {
		err = r.Validate(ctx)
	}
	if err == nil {
		err = r.Status(ctx)
	}
	if err == nil {
		err = SaveNetwork(s.cfg.StateDir, n)
	}
	if err != nil {
		s.setNotReady(s.describe(err))
		return false
	}
	s.mu.Lock()
	s.runner, s.notReady, s.lastLog = r, nil, ""
	s.mu.Unlock()
	s.log.WithFields(logrus.Fields{"network": n.Name(), "cniVersion": n.CNIVersion()}).Info("pod network ready")
	return true
}

func (s *Service) setNotReady(err error) {
	s.mu.Lock()
	s.notReady = err
	first := err.Error() != s.lastLog
	s.lastLog = err.Error()
	s.mu.Unlock()
	if first {
		s.log.WithError(err).Error("pod network not ready; pods that need it wait")
	}
}

func (s *Service) currentRunner() *Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runner
}

// status runs CNI STATUS: a plugin that stops being ready makes the network not ready.
func (s *Service) status(ctx context.Context) {
	r := s.currentRunner()
	if r == nil {
		return
	}
	if err := r.Status(ctx); err != nil {
		s.setNotReady(err)
		return
	}
	s.mu.Lock()
	wasNot := s.notReady != nil
	s.notReady, s.lastLog = nil, ""
	s.mu.Unlock()
	if wasNot {
		s.log.Info("pod network ready again")
	}
}

// gc frees what no live sandbox holds. The live set is every ready sandbox in the runtime,
// whoever made it. It reports whether the GC ran.
func (s *Service) gc(ctx context.Context) bool {
	r := s.currentRunner()
	if r == nil || s.cfg.Sandboxes == nil {
		return true // nothing to collect with
	}
	sbs, err := s.cfg.Sandboxes(ctx)
	if err != nil {
		s.log.WithError(err).Warn("CNI GC skipped: cannot list the runtime's sandboxes")
		return false
	}
	live := map[string]bool{}
	for _, sb := range sbs {
		if sb.Ready {
			live[sb.ID] = true
		}
	}
	var attachments []Attachment
	for id := range live {
		attachments = append(attachments, Attachment{ContainerID: id, IfName: "eth0"})
	}
	cached, err := r.CachedAttachments()
	if err != nil {
		s.log.WithError(err).Warn("CNI GC skipped")
		return false
	}
	for _, a := range cached {
		if live[a.ContainerID] && a.IfName != "eth0" {
			attachments = append(attachments, a)
		}
	}
	start := time.Now()
	if err := r.GC(ctx, attachments); err != nil {
		// A plugin failing its GC is not retried at once: it would most likely fail again.
		s.log.WithError(err).Warn("CNI GC failed; retrying at the next period")
		return true
	}
	s.log.WithFields(logrus.Fields{"live": len(live), "took": time.Since(start).Round(time.Millisecond)}).Debug("CNI GC done")
	return true
}

// check runs CHECK for every ready sandbox of this node and reports failures. The netns and
// pod identity come from the result cache, so pods adopted after an agent restart are checked
// too.
func (s *Service) check(ctx context.Context) {
	r := s.currentRunner()
	if r == nil || s.cfg.Sandboxes == nil || s.cfg.CheckFailed == nil {
		return
	}
	sbs, err := s.cfg.Sandboxes(ctx)
	if err != nil {
		s.log.WithError(err).Warn("CNI CHECK skipped: cannot list the runtime's sandboxes")
		return
	}
	cached, err := r.CachedAttachments()
	if err != nil {
		s.log.WithError(err).Warn("CNI CHECK skipped")
		return
	}
	byID := map[string][]Attachment{}
	for _, a := range cached {
		byID[a.ContainerID] = append(byID[a.ContainerID], a)
	}
	for _, sb := range sbs {
		if !sb.Mine || !sb.Ready || ctx.Err() != nil {
			continue
		}
		as := byID[sb.ID]
		if len(as) == 0 {
			as = []Attachment{{ContainerID: sb.ID, IfName: "eth0", PodUID: sb.PodUID}}
		}
		for _, a := range as {
			if err := r.Check(ctx, a); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.WithFields(logrus.Fields{"sandbox": sb.ID, "podUID": sb.PodUID}).WithError(err).Warn("pod network failed CNI CHECK")
				s.cfg.CheckFailed(sb.PodUID, sb.ID, err)
				break
			}
		}
	}
}

// handle runs one call forwarded by the delegate. It waits on nothing but the runner: the
// call may come from inside a pod worker's RunPodSandbox or StopPodSandbox.
func (s *Service) handle(ctx context.Context, req Request) (out []byte, err error) {
	start := time.Now()
	var a Attachment // what the call is about, once read: its pod goes to Observe
	defer func() {
		took := time.Since(start)
		if s.cfg.Observe != nil {
			s.cfg.Observe(Call{Command: req.Command, SandboxID: req.ContainerID, PodUID: a.PodUID, Start: start, Took: took, Err: err})
		}
		l := s.log.WithFields(logrus.Fields{"command": req.Command, "sandbox": req.ContainerID, "took": took.String()})
		switch {
		case err != nil && req.Command != CommandStatus:
			l.WithError(err).Warn("CNI call from the delegate failed")
		case err != nil:
			// containerd asks for STATUS every few seconds; not-ready is logged once by
			// setNotReady.
			l.WithError(err).Debug("CNI call from the delegate failed")
		default:
			l.Debug("CNI call from the delegate")
		}
	}()
	// Read first, so even a call refused below is put down to its pod; a bad request fails
	// only where the runner would need it (a DEL without a runner goes on without it).
	var aErr error
	switch req.Command {
	case CommandAdd, CommandDel, CommandCheck:
		a, aErr = AttachmentFromRequest(req)
	}
	r := s.currentRunner()
	switch req.Command {
	case CommandStatus:
		if err := s.Ready(); err != nil {
			return nil, types.NewError(types.ErrPluginNotAvailable, "nodeagent: pod network not ready: "+err.Error(), "")
		}
		return nil, nil
	case CommandGC:
		// The agent runs its own GC with the runtime's view and the grace for fresh ADDs.
		return nil, nil
	case CommandDel:
		if r == nil {
			// Not validated in this run (a plugin went missing): release with the list the
			// last run saved, as the delegate would without an agent.
			return nil, delWithoutAgent(req, DelegateConf{StateDir: s.cfg.StateDir}, s.cfg.Runner)
		}
	}
	if r == nil {
		return nil, types.NewError(types.ErrTryAgainLater, "nodeagent: pod network not ready: "+s.readyText(), "")
	}
	if aErr != nil {
		return nil, aErr
	}
	switch req.Command {
	case CommandAdd:
		res, err := r.Add(ctx, a)
		if err != nil {
			return nil, err
		}
		return EncodeResult(res, RequestCNIVersion(req))
	case CommandDel:
		return nil, r.Del(ctx, a)
	case CommandCheck:
		return nil, r.Check(ctx, a)
	}
	return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("unknown CNI_COMMAND %q", req.Command), "")
}

func (s *Service) readyText() string {
	if err := s.Ready(); err != nil {
		return err.Error()
	}
	return "ok"
}
