package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
)

// Defaults of FileSourceConfig.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultResync   = 20 * time.Second
)

// dirPollInterval is how often a missing (or unwatchable) manifest directory is looked for.
const dirPollInterval = time.Second

// FileSourceConfig configures a FileSource.
type FileSourceConfig struct {
	// Dir is the manifest directory. Required. It need not exist yet.
	Dir string
	// NodeName is this node's name, a DNS-1123 subdomain. Required. It is appended to every
	// pod's name and set as its spec.nodeName, and it is part of every pod's UID.
	NodeName string
	// Log receives the source's logs. Required.
	Log *logrus.Entry
	// Debounce is the window after a rescan in which further filesystem events (an editor's
	// save is several) are gathered into one more rescan at its end. The first event after a
	// quiet spell is rescanned at once. A file that does not parse and changed less than a
	// second ago is taken for one being written: it keeps its last good pods and is looked
	// at again. Default DefaultDebounce.
	Debounce time.Duration
	// Resync is the period of a full rescan regardless of events: the safety net for what
	// inotify does not report (a symlinked manifest's target changing, a lost event).
	// Default DefaultResync.
	Resync time.Duration
	// OnConfigChange, when set, is called after the ConfigMaps and Secrets in Configs changed
	// (one added, removed, or with other content; never for a rescan that changes nothing),
	// so that mounted volumes can be refreshed. It is called from Run's goroutine, before
	// the pods of the same scan are handed to update.
	OnConfigChange func()
	// MaxFileBytes caps what is read of one manifest file: a larger file is not parsed, its
	// pods are removed as those of an unreadable file, and the error names the file, its
	// size and the flag --manifest-max-bytes. Default DefaultMaxFileBytes.
	MaxFileBytes int64
}

// FileSource is the "file" pod source: the static pods defined by a directory of manifests.
// Create it with NewFileSource and call Run once.
type FileSource struct {
	dir      string
	nodeName string
	log      *logrus.Entry
	debounce time.Duration
	resync   time.Duration
	dirPoll  time.Duration    // tests shorten it
	clock    clock.WithTicker // decides debounce, resync and config.seen
	configs  *ConfigStore
	onConfig func() // may be nil
	maxBytes int64  // per manifest file
}

// NewFileSource checks cfg and returns a source ready to Run.
func NewFileSource(cfg FileSourceConfig) (*FileSource, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("file pod source: Dir is required")
	case cfg.NodeName == "":
		return nil, errors.New("file pod source: NodeName is required")
	case cfg.Log == nil:
		return nil, errors.New("file pod source: Log is required")
	case cfg.Debounce < 0:
		return nil, fmt.Errorf("file pod source: Debounce must not be negative, got %v", cfg.Debounce)
	case cfg.Resync < 0:
		return nil, fmt.Errorf("file pod source: Resync must not be negative, got %v", cfg.Resync)
	case cfg.MaxFileBytes < 0:
		return nil, fmt.Errorf("file pod source: MaxFileBytes must not be negative, got %d", cfg.MaxFileBytes)
	}
	if msgs := validation.IsDNS1123Subdomain(cfg.NodeName); len(msgs) > 0 {
		return nil, fmt.Errorf("file pod source: node name %q: %s", cfg.NodeName, msgs[0])
	}
	s := &FileSource{
		dir:      filepath.Clean(cfg.Dir),
		nodeName: cfg.NodeName,
		log:      cfg.Log.WithField("source", SourceFile),
		debounce: cfg.Debounce,
		resync:   cfg.Resync,
		dirPoll:  dirPollInterval,
		clock:    clock.RealClock{},
		configs:  &ConfigStore{},
		onConfig: cfg.OnConfigChange,
		maxBytes: cfg.MaxFileBytes,
	}
	if s.maxBytes == 0 {
		s.maxBytes = DefaultMaxFileBytes
	}
	if s.debounce == 0 {
		s.debounce = DefaultDebounce
	}
	if s.resync == 0 {
		s.resync = DefaultResync
	}
	return s, nil
}

// Configs returns the store of the ConfigMaps and Secrets defined in the directory. It is
// the same store for the source's whole life: empty until Run's first scan, then updated
// by Run.
func (s *FileSource) Configs() *ConfigStore { return s.configs }

// Run watches the directory until ctx ends, then returns nil. It calls update with the
// COMPLETE current set of valid pods from the directory: once at start (even if empty), and
// after every change that alters the set (a pod added or removed, or a pod's document moved
// to another file or index), never for events that change nothing. update is called from
// Run's goroutine, never concurrently; events arriving meanwhile are gathered for the next
// rescan. The pods are fresh copies each call: the callee may keep and modify them.
//
// A directory that does not exist yet is an empty set; Run looks for it every second and
// watches it once it appears. A directory that is deleted becomes an empty set again.
// Run returns an error only if the watcher itself cannot be created or breaks.
//
// Each scan's ConfigMaps and Secrets replace those in Configs, before its pods are handed
// to update; OnConfigChange says when that changed anything.
func (s *FileSource) Run(ctx context.Context, update func(pods []*v1.Pod)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch manifest directory %s: %w", s.dir, err)
	}
	defer w.Close()

	r := &fileRun{
		src:    s,
		sc:     newScanner(s.dir, s.nodeName, s.log, s.clock.Now),
		update: update,
	}
	r.sc.maxFileBytes = s.maxBytes
	var settleC <-chan time.Time
	r.onRecheck = func(d time.Duration) { settleC = s.clock.After(d) }
	// Watch before the first scan, so that no change can fall between the two.
	pollC := r.watch(w)
	r.syncOnce()

	resync := s.clock.NewTicker(s.resync)
	defer resync.Stop()
	// The first event after a quiet spell is acted on at once (a manifest renamed into place
	// is complete, and a pod should start without waiting); events that follow within the
	// debounce window are gathered into one rescan at its end.
	var debounceC <-chan time.Time
	dirty := false
	rescanSoon := func() {
		if debounceC != nil {
			dirty = true
			return
		}
		r.syncOnce()
		debounceC = s.clock.After(s.debounce)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("manifest directory watcher closed")
			}
			if filepath.Clean(ev.Name) == s.dir {
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					// The watch went with the directory (fsnotify has dropped it already);
					// look for a directory at the path again.
					_ = w.Remove(s.dir)
					pollC = s.clock.After(s.dirPoll)
				}
				rescanSoon()
				continue
			}
			if isManifestName(filepath.Base(ev.Name)) {
				rescanSoon()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("manifest directory watcher closed")
			}
			// Typically a queue overflow: events were lost, so rescan.
			s.log.WithField("dir", s.dir).WithError(err).Warn("manifest directory watch error; rescanning")
			rescanSoon()
		case <-debounceC:
			debounceC = nil
			if dirty {
				dirty = false
				rescanSoon()
			}
		case <-settleC:
			settleC = nil
			r.syncOnce()
		case <-resync.C():
			r.syncOnce()
		case <-pollC:
			// Not watching: try again, and rescan anyway so that a directory that exists but
			// cannot be watched is still followed at this pace.
			pollC = r.watch(w)
			r.syncOnce()
		}
	}
}

// fileRun is the state of one Run: the loop selects, syncOnce does one pass.
type fileRun struct {
	src      *FileSource
	sc       *scanner
	update   func(pods []*v1.Pod)
	watchErr string               // last logged error adding the watch
	started  bool                 // update has been called at least once
	last     map[types.UID]string // what update last got: UID -> manifest location
	// onRecheck schedules another scan, for files still being written.
	onRecheck func(time.Duration)
}

// watch adds the directory to w. When that fails it returns a channel that fires when to try
// again; when it works, nil.
func (r *fileRun) watch(w *fsnotify.Watcher) <-chan time.Time {
	err := w.Add(r.src.dir)
	if err == nil {
		r.watchErr = ""
		return nil
	}
	// A missing directory is reported by the scan; any other failure is ours to report.
	if !errors.Is(err, fs.ErrNotExist) && err.Error() != r.watchErr {
		r.watchErr = err.Error()
		r.src.log.WithField("dir", r.src.dir).WithError(err).
			Warn("cannot watch manifest directory; polling it every second")
	}
	return r.src.clock.After(r.src.dirPoll)
}

// syncOnce rescans the directory, updates the config store (and says so if it changed),
// then hands the pods to update if they differ from the last set handed over (or if update
// was never called). Configs go first so that a pod and the ConfigMap it mounts, added
// together, arrive in that order.
func (r *fileRun) syncOnce() {
	pods := r.sc.scan()
	if r.sc.recheck > 0 && r.onRecheck != nil {
		r.onRecheck(r.sc.recheck)
	}
	if r.src.configs.replace(r.sc.configs) {
		r.src.log.WithFields(logrus.Fields{
			"configMaps": len(r.sc.configs.configMaps), "secrets": len(r.sc.configs.secrets),
		}).Info("manifest configs changed")
		if r.src.onConfig != nil {
			r.src.onConfig()
		}
	}
	next := make(map[types.UID]string, len(pods))
	for _, p := range pods {
		next[p.UID] = p.Annotations[AnnotationManifestFile]
	}
	added, removed, moved := diffSets(r.last, next)
	if r.started && added+removed+moved == 0 {
		return
	}
	if r.started {
		r.src.log.WithFields(logrus.Fields{
			"added": added, "removed": removed, "moved": moved, "total": len(pods),
		}).Info("manifest pods changed")
	} else {
		r.src.log.WithFields(logrus.Fields{"dir": r.src.dir, "total": len(pods)}).Info("manifest pods loaded")
	}
	r.started, r.last = true, next

	out := make([]*v1.Pod, len(pods))
	for i, p := range pods {
		out[i] = p.DeepCopy()
	}
	r.update(out)
}

// diffSets counts pods only in next (added), only in prev (removed), and in both but defined
// at another place (moved).
func diffSets(prev, next map[types.UID]string) (added, removed, moved int) {
	for uid, loc := range next {
		prevLoc, ok := prev[uid]
		switch {
		case !ok:
			added++
		case prevLoc != loc:
			moved++
		}
	}
	for uid := range prev {
		if _, ok := next[uid]; !ok {
			removed++
		}
	}
	return added, removed, moved
}
