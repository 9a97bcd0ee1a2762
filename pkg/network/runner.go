package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"
)

// ErrNotAttached means the runner has no record of an attachment: it was never added, or the
// result cache lost it. The pod's network has to be set up again.
var ErrNotAttached = errors.New("no cached CNI result for this attachment")

// Attachment is one pod's interface on the node network: what a CNI ADD, DEL or CHECK is
// about. ContainerID is the pod sandbox ID, the key CNI and containerd share.
type Attachment struct {
	ContainerID  string
	NetNS        string
	IfName       string
	PodName      string
	PodNamespace string
	PodUID       string
	PortMappings []PortMapping
	Bandwidth    *Bandwidth
}

// PortMapping is one hostPort, in the shape of the portMappings capability that portmap reads.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Bandwidth is the bandwidth capability the bandwidth plugin reads: rates in bits per second,
// bursts in bits. Zero leaves that direction unshaped.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

func (a Attachment) key() attachmentKey {
	return attachmentKey{containerID: a.ContainerID, ifName: a.IfName}
}

// attachmentKey is how CNI identifies an attachment (GC's valid-attachments uses the same pair).
type attachmentKey struct{ containerID, ifName string }

// RunnerOptions are the optional knobs of NewRunner.
type RunnerOptions struct {
	// Exec runs the plugin binaries. Nil means libcni's real exec; tests pass a fake.
	Exec invoke.Exec
	// LockFile, when set, is flocked shared around every ADD and DEL and exclusively around
	// GC, so runners in other processes sharing the cache (the delegate's DEL fallback,
	// other agents on a test bed) never meet a GC halfway through an ADD.
	LockFile string
	// GCGrace protects attachments whose cached result is younger than this from GC: an ADD
	// another process just finished belongs to a sandbox the runtime may not list yet.
	// Zero means DefaultGCGrace.
	GCGrace time.Duration
	// Now is the clock GCGrace is measured with; nil means time.Now.
	Now func() time.Time
	// MaxParallel bounds the ADD, DEL and CHECK calls whose plugins run at once; others wait
	// their turn. Zero means DefaultMaxParallel().
	MaxParallel int
	// AttachmentDir, when set, holds the attachment lock files (attachlock.go): ADD and DEL
	// lock the attachment across processes and hand the lock down to the plugins, so a DEL
	// waits for every process of an ADD whose agent died; GC learns from them about ADDs
	// killed before they cached a result. Every process sharing the cache must use the same
	// one (AttachmentDir of the state dir).
	AttachmentDir string
	// Commands runs iptables-save and iptables-restore for the NAT sweep (natsweep.go) of
	// DEL and GC. Nil means the real commands; tests pass a fake.
	Commands Commands
}

// DefaultMaxParallel is RunnerOptions.MaxParallel's default: two per CPU, at least four.
// Each running plugin holds an OS thread of the agent while it waits for the child, and the
// Go runtime keeps every thread it ever made: a burst of 100 sandboxes run unbounded left the
// agent with 70 idle threads (about 3 MiB of their stacks). Plugins are mostly CPU and
// netlink work, so more at once than a few per core would not finish sooner.
func DefaultMaxParallel() int { return max(4, 2*runtime.NumCPU()) }

// DefaultGCGrace is RunnerOptions.GCGrace's default: far longer than any RunPodSandbox.
const DefaultGCGrace = 2 * time.Minute

// delOrphanWait bounds how long a DEL waits for the processes of an earlier call for the same
// attachment (an ADD whose agent was killed) to end. They are killed with the agent
// (Pdeathsig), so only what they started themselves (host-local, an iptables command) is left,
// and that ends within milliseconds; a DEL that still cannot start fails with "try again".
const delOrphanWait = 30 * time.Second

// Runner runs the node network list for pod attachments with libcni. It is safe for concurrent
// use. It never waits on anything but plugin processes and its own short locks, so the delegate
// server can call it while a pod worker is inside RunPodSandbox (see DESIGN.md decision 5).
type Runner struct {
	network   *Network
	cni       *libcni.CNIConfig
	cacheDir  string
	lockFile  string
	attachDir string
	cmds      Commands
	gcGrace   time.Duration
	now       func() time.Time

	// gcMu keeps GC out while any ADD, DEL or CHECK runs (they hold it shared): a GC racing an
	// ADD could free the address the ADD is handing out.
	gcMu sync.RWMutex

	// slots holds a token per call whose plugins are running (MaxParallel).
	slots chan struct{}

	// mu guards busy and known.
	mu sync.Mutex
	// busy holds one lock per attachment: CNI forbids concurrent calls for the same container
	// and interface, and the agent's CHECK loop could otherwise meet containerd's DEL.
	busy map[attachmentKey]*attachmentLock
	// known holds the attachments this process has ADDed and not since been asked to DEL.
	// GC always treats them as live, so a pod created between the caller's snapshot of the
	// runtime and the GC call is never collected.
	known map[attachmentKey]struct{}
}

type attachmentLock struct {
	mu   sync.Mutex
	refs int // guarded by Runner.mu
}

// NewRunner returns a Runner for network. cacheDir is where libcni keeps each attachment's
// result so DEL and CHECK get it as prevResult and GC can find leaked attachments after a
// crash. It must be the agent's own directory, not containerd's (/var/lib/cni by default):
// libcni keys the cache by network name and container ID, and containerd caches the
// delegate's result there too.
func NewRunner(network *Network, cacheDir string, opts RunnerOptions) (*Runner, error) {
	if network == nil {
		return nil, errors.New("new CNI runner: no network")
	}
	if cacheDir == "" {
		return nil, errors.New("new CNI runner: no cache dir")
	}
	r := &Runner{
		network:   network,
		cacheDir:  cacheDir,
		lockFile:  opts.LockFile,
		attachDir: opts.AttachmentDir,
		cmds:      opts.Commands,
		gcGrace:   opts.GCGrace,
		now:       opts.Now,
		busy:      map[attachmentKey]*attachmentLock{},
		known:     map[attachmentKey]struct{}{},
	}
	if opts.Exec == nil {
		opts.Exec = &pluginExec{}
	}
	r.cni = libcni.NewCNIConfigWithCacheDir(network.binDirs, cacheDir, opts.Exec)
	if r.cmds == nil {
		r.cmds = hostCommands{}
	}
	if r.gcGrace == 0 {
		r.gcGrace = DefaultGCGrace
	}
	n := opts.MaxParallel
	if n <= 0 {
		n = DefaultMaxParallel()
	}
	r.slots = make(chan struct{}, n)
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Network is the list this runner runs.
func (r *Runner) Network() *Network { return r.network }

// Add attaches the pod to the network and returns the result of the last plugin, in the
// list's cniVersion. On failure the caller (containerd, through the delegate) must still DEL,
// as the CNI spec requires, to release what the plugins that did succeed allocated.
func (r *Runner) Add(ctx context.Context, a Attachment) (types.Result, error) {
	unlock := r.lock(a.key())
	defer unlock()
	release, err := r.sharedFlock()
	if err != nil {
		return nil, fmt.Errorf("CNI ADD for sandbox %s (pod %s): %w", a.ContainerID, podRef(a), err)
	}
	defer release()

	// Locked and on the inventory before any plugin runs: if this process dies halfway, the
	// DEL that follows waits for the plugins' processes, and GC knows the attachment.
	held, err := lockAttachment(ctx, r.attachDir, r.record(a))
	if err != nil {
		return nil, fmt.Errorf("CNI ADD for sandbox %s (pod %s): %w", a.ContainerID, podRef(a), err)
	}
	defer held.release()

	done, err := r.slot(ctx)
	if err != nil {
		return nil, fmt.Errorf("CNI ADD for sandbox %s (pod %s): %w", a.ContainerID, podRef(a), err)
	}
	res, err := r.cni.AddNetworkList(withInherited(ctx, held.file()), r.network.list, runtimeConf(a))
	done()
	if err != nil {
		// A failed ADD is no attachment; leaving it out lets GC free its leftovers if the
		// runtime's DEL never comes.
		return nil, fmt.Errorf("CNI ADD of network %q for sandbox %s (pod %s): %w", r.network.Name(), a.ContainerID, podRef(a), err)
	}
	// Known from here on. No GC saw it missing meanwhile: GC waits for the shared lock this
	// call holds.
	r.mu.Lock()
	r.known[a.key()] = struct{}{}
	r.mu.Unlock()
	return res, nil
}

// Del detaches the pod. It is idempotent: deleting twice, or an attachment that was never
// added, succeeds, because the plugins' DEL must tolerate missing resources. A netns that no
// longer exists is passed as empty, which the spec allows and plugins handle by only releasing
// their state (the IPAM lease). DEL should still run while the netns exists: the bridge plugin
// only removes its masquerade rule when it can see the interface.
//
// It first waits until no process of an earlier call for the attachment is left (an ADD
// whose agent was killed), so it never races plugins still installing rules. Where the
// plugins cannot be trusted to find everything (no cached result: the ADD did not finish; no
// netns; a plugin's DEL failed) it also sweeps the attachment's NAT rules by name
// (natsweep.go), and a DEL that failed runs once more after that sweep: a half-done ADD's
// leftovers (a masquerade chain still referenced, say) are what make it fail.
func (r *Runner) Del(ctx context.Context, a Attachment) error {
	unlock := r.lock(a.key())
	defer unlock()
	release, err := r.sharedFlock()
	if err != nil {
		return fmt.Errorf("CNI DEL for sandbox %s (pod %s): %w", a.ContainerID, podRef(a), err)
	}
	defer release()

	// Forget it before running: the runtime considers it gone even if DEL fails, and from
	// here on a GC is free to release it.
	r.mu.Lock()
	delete(r.known, a.key())
	r.mu.Unlock()

	if a.NetNS != "" {
		if _, err := os.Stat(a.NetNS); errors.Is(err, os.ErrNotExist) {
			a.NetNS = ""
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, delOrphanWait)
	held, err := lockAttachment(waitCtx, r.attachDir, r.record(a))
	cancel()
	if err != nil {
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("CNI DEL for sandbox %s (pod %s): %v", a.ContainerID, podRef(a), err), "")
	}
	defer held.release()

	done, err := r.slot(ctx)
	if err != nil {
		return fmt.Errorf("CNI DEL for sandbox %s (pod %s): %w", a.ContainerID, podRef(a), err)
	}
	defer done()
	ctx = withInherited(ctx, held.file())
	rt := runtimeConf(a)
	cached, cerr := r.cni.GetNetworkListCachedResult(r.network.list, rt)
	err = r.cni.DelNetworkList(ctx, r.network.list, rt)
	if err != nil || cerr != nil || cached == nil || a.NetNS == "" {
		id := a.ContainerID
		serr := sweepNAT(ctx, r.cmds, r.network.Name(), []string{id}, func(s string) bool { return s == id })
		if err != nil && serr == nil {
			err = r.cni.DelNetworkList(ctx, r.network.list, rt)
		}
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("CNI DEL of network %q for sandbox %s (pod %s): %w", r.network.Name(), a.ContainerID, podRef(a), err)
	}
	if err := held.remove(); err != nil {
		return fmt.Errorf("CNI DEL for sandbox %s (pod %s): %w", a.ContainerID, podRef(a), err)
	}
	return nil
}

// record is the attachment's lock file record.
func (r *Runner) record(a Attachment) attachmentRecord {
	return attachmentRecord{Network: r.network.Name(), ContainerID: a.ContainerID, IfName: a.IfName}
}

// Check asks every plugin whether the attachment is still as ADD left it. It fails with
// ErrNotAttached when there is no cached result for it (never added, or the cache was lost).
func (r *Runner) Check(ctx context.Context, a Attachment) error {
	unlock := r.lock(a.key())
	defer unlock()
	// libcni would run CHECK with no prevResult, and every plugin would fail it with its own
	// wording; one error the CHECK loop can act on (re-ADD) is better.
	cached, err := r.cni.GetNetworkListCachedResult(r.network.list, runtimeConf(a))
	if err != nil {
		return fmt.Errorf("CNI CHECK of network %q for sandbox %s (pod %s): read cached result: %w", r.network.Name(), a.ContainerID, podRef(a), err)
	}
	if cached == nil {
		return fmt.Errorf("CNI CHECK of network %q for sandbox %s (pod %s): %w", r.network.Name(), a.ContainerID, podRef(a), ErrNotAttached)
	}
	done, err := r.slot(ctx)
	if err != nil {
		return fmt.Errorf("CNI CHECK for sandbox %s (pod %s): %w", a.ContainerID, podRef(a), err)
	}
	defer done()
	if err := r.cni.CheckNetworkList(ctx, r.network.list, runtimeConf(a)); err != nil {
		return fmt.Errorf("CNI CHECK of network %q for sandbox %s (pod %s): %w", r.network.Name(), a.ContainerID, podRef(a), err)
	}
	return nil
}

// GC releases everything that does not belong to a live attachment: first a DEL for each
// attachment in the result cache that is not live, then (CNI 1.1) a GC call to every plugin
// with cni.dev/valid-attachments, which frees what left no cache entry (a crash in the middle
// of an ADD). live is the runtime's view; attachments this process ADDed and has not been
// asked to DEL, cached ones younger than the grace period, and attachments whose lock some
// process holds (a call, or the processes of a call whose agent died, still running) are
// added to it. It waits for running ADD/DEL/CHECK calls to finish and holds new ones back
// until it is done.
//
// The plugins the node list uses do not implement GC themselves, so GC also DELs the
// attachments whose lock files outlived them (an ADD killed before it cached a result; a DEL
// that failed), and sweeps the NAT rules of every attachment that is not valid
// (natsweep.go): those of the lock files, and those the rules' comments name.
func (r *Runner) GC(ctx context.Context, live []Attachment) error {
	r.gcMu.Lock()
	defer r.gcMu.Unlock()
	if r.lockFile != "" {
		release, err := flock(r.lockFile, unix.LOCK_EX)
		if err != nil {
			return fmt.Errorf("CNI GC of network %q: %w", r.network.Name(), err)
		}
		defer release()
	}

	seen := map[attachmentKey]bool{}
	var valid []types.GCAttachment
	add := func(k attachmentKey) {
		if seen[k] {
			return
		}
		seen[k] = true
		valid = append(valid, types.GCAttachment{ContainerID: k.containerID, IfName: k.ifName})
	}
	for _, a := range live {
		add(a.key())
	}
	r.mu.Lock()
	for k := range r.known {
		add(k)
	}
	r.mu.Unlock()
	fresh, err := r.freshAttachments()
	if err != nil {
		return fmt.Errorf("CNI GC of network %q: %w", r.network.Name(), err)
	}
	for _, k := range fresh {
		add(k)
	}
	stale, err := r.staleAttachmentLocks(seen, add)
	if err != nil {
		return fmt.Errorf("CNI GC of network %q: %w", r.network.Name(), err)
	}
	defer func() {
		for _, h := range stale {
			h.release()
		}
	}()

	var errs []error
	if err := r.cni.GCNetworkList(ctx, r.network.list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		errs = append(errs, err)
	}
	// Without netns or capability args: bridge releases the address, bandwidth removes its
	// ifb device (both by container ID); the sweep below takes the NAT rules.
	removable := make([]*heldAttachment, 0, len(stale))
	var staleIDs []string
	for _, h := range stale {
		staleIDs = append(staleIDs, h.rec.ContainerID)
		rt := &libcni.RuntimeConf{ContainerID: h.rec.ContainerID, IfName: h.rec.IfName}
		if err := r.cni.DelNetworkList(withInherited(ctx, h.file()), r.network.list, rt); err != nil {
			errs = append(errs, fmt.Errorf("DEL of attachment %s/%s: %w", h.rec.ContainerID, h.rec.IfName, err))
			continue
		}
		removable = append(removable, h)
	}
	validIDs := map[string]bool{}
	for k := range seen {
		validIDs[k.containerID] = true
	}
	if err := sweepNAT(ctx, r.cmds, r.network.Name(), staleIDs, func(id string) bool { return !validIDs[id] }); err != nil {
		errs = append(errs, err)
	} else {
		for _, h := range removable {
			if err := h.remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("CNI GC of network %q: %w", r.network.Name(), err)
	}
	return nil
}

// staleAttachmentLocks locks the attachment lock files of attachments not in seen. A lock
// another process holds means the attachment is in use, and it is made valid with add.
func (r *Runner) staleAttachmentLocks(seen map[attachmentKey]bool, add func(attachmentKey)) ([]*heldAttachment, error) {
	locks, err := attachmentLocks(r.attachDir, r.network.Name())
	if err != nil {
		return nil, err
	}
	var stale []*heldAttachment
	for path, rec := range locks {
		if seen[rec.key()] {
			continue
		}
		h, ok, err := tryLockAttachment(path)
		if err != nil {
			for _, h := range stale {
				h.release()
			}
			return nil, err
		}
		if !ok {
			add(rec.key())
			continue
		}
		h.rec = rec
		stale = append(stale, h)
	}
	return stale, nil
}

// Status asks every plugin whether it is ready for ADDs (CNI 1.1 STATUS); lists of older
// versions always report ready. It feeds the agent's network readiness.
func (r *Runner) Status(ctx context.Context) error {
	if err := r.cni.GetStatusNetworkList(ctx, r.network.list); err != nil {
		return fmt.Errorf("CNI STATUS of network %q: %w", r.network.Name(), err)
	}
	return nil
}

// Validate runs every plugin's VERSION command and checks it supports the list's cniVersion.
// LoadNetwork cannot do this because it executes the binaries.
func (r *Runner) Validate(ctx context.Context) error {
	if _, err := r.cni.ValidateNetworkList(ctx, r.network.list); err != nil {
		return fmt.Errorf("%w: network %q: %v", ErrInvalidConfig, r.network.Name(), err)
	}
	return nil
}

// freshAttachments lists the cached attachments of this network written within the grace
// period.
func (r *Runner) freshAttachments() ([]attachmentKey, error) {
	cached, err := r.CachedAttachments()
	if err != nil {
		return nil, err
	}
	var fresh []attachmentKey
	for _, c := range cached {
		// The path is libcni's cache layout: results/<network>-<container>-<ifname>.
		p := filepath.Join(r.cacheDir, "results", fmt.Sprintf("%s-%s-%s", r.network.Name(), c.ContainerID, c.IfName))
		info, err := os.Stat(p)
		if err != nil {
			continue // DELed since the listing
		}
		if r.now().Sub(info.ModTime()) < r.gcGrace {
			fresh = append(fresh, c.key())
		}
	}
	return fresh, nil
}

// CachedAttachments lists the attachments of this network that have a cached result, with
// the netns and pod identity recorded at ADD: what the CHECK loop checks after an agent restart.
func (r *Runner) CachedAttachments() ([]Attachment, error) {
	cached, err := r.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("list cached CNI attachments: %w", err)
	}
	var out []Attachment
	for _, c := range cached {
		if c.Network != r.network.Name() {
			continue
		}
		a := Attachment{ContainerID: c.ContainerID, NetNS: c.NetNS, IfName: c.IfName}
		for _, kv := range c.CniArgs {
			switch kv[0] {
			case "K8S_POD_NAMESPACE":
				a.PodNamespace = kv[1]
			case "K8S_POD_NAME":
				a.PodName = kv[1]
			case "K8S_POD_UID":
				a.PodUID = kv[1]
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// slot waits for a turn to run plugins (MaxParallel) and returns its release.
func (r *Runner) slot(ctx context.Context) (func(), error) {
	select {
	case r.slots <- struct{}{}:
		return func() { <-r.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// sharedFlock takes the cross-process lock shared, if there is one.
func (r *Runner) sharedFlock() (func(), error) {
	if r.lockFile == "" {
		return func() {}, nil
	}
	return flock(r.lockFile, unix.LOCK_SH)
}

// lock takes the attachment's lock and GC's shared lock, and returns the release.
func (r *Runner) lock(k attachmentKey) func() {
	r.gcMu.RLock()
	r.mu.Lock()
	l := r.busy[k]
	if l == nil {
		l = &attachmentLock{}
		r.busy[k] = l
	}
	l.refs++
	r.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		r.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(r.busy, k)
		}
		r.mu.Unlock()
		r.gcMu.RUnlock()
	}
}

// runtimeConf builds libcni's per-call arguments. CNI_ARGS carries the same keys containerd
// passes, so plugins that look pods up (and IgnoreUnknown so those that do not) behave alike
// whether the agent or containerd runs them. libcni hands each capability only to the plugins
// that declare it.
func runtimeConf(a Attachment) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: a.ContainerID,
		NetNS:       a.NetNS,
		IfName:      a.IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", a.PodNamespace},
			{"K8S_POD_NAME", a.PodName},
			{"K8S_POD_INFRA_CONTAINER_ID", a.ContainerID},
			{"K8S_POD_UID", a.PodUID},
		},
		CapabilityArgs: map[string]any{},
	}
	if len(a.PortMappings) > 0 {
		rt.CapabilityArgs["portMappings"] = a.PortMappings
	}
	if a.Bandwidth != nil {
		rt.CapabilityArgs["bandwidth"] = a.Bandwidth
	}
	return rt
}

func podRef(a Attachment) string {
	if a.PodName == "" {
		return "unknown"
	}
	return a.PodNamespace + "/" + a.PodName
}
