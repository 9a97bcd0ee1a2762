package logs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/clock"
)

// Defaults of Config, the kubelet's.
const (
	DefaultMaxSize  = 10 << 20 // 10Mi
	DefaultMaxFiles = 5
	DefaultPeriod   = 10 * time.Second
)

// timestampFormat suffixes rotated files, as the kubelet names them; name order is age order.
const timestampFormat = "20060102-150405"

// Container is a running container whose log file the Rotator looks after.
type Container struct {
	ID      string
	LogPath string // absolute, as the runtime reports it
}

// Runtime is what the Rotator needs from the container runtime (*cri.Client).
type Runtime interface {
	ReopenContainerLog(ctx context.Context, id string) error
}

// Config configures a Rotator.
type Config struct {
	// List returns the running containers to look after (required). Containers of other
	// agents sharing the runtime must not be in it.
	List func(ctx context.Context) ([]Container, error)
	// MaxSize: a current log file larger than this is rotated. Default DefaultMaxSize.
	MaxSize int64
	// MaxFiles is the most files kept per container, the current one included; at least 2.
	// Default DefaultMaxFiles.
	MaxFiles int
	// Period between passes. Default DefaultPeriod.
	Period time.Duration
	// Clock names rotated files and paces passes. Default the real clock.
	Clock clock.WithTicker
	Log   *logrus.Entry
}

// Rotator rotates running containers' log files; see the package doc.
type Rotator struct {
	cfg Config
	rt  Runtime
	// failing is the last error logged per container ID, so a lasting failure is logged once.
	// Only the Run goroutine (or a test calling RotateOnce) touches it.
	failing map[string]string
}

// ParseSize parses a size flag such as 10Mi or 64Ki (a Kubernetes quantity) into bytes.
func ParseSize(s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (10Mi, 64Ki): %w", s, err)
	}
	v, ok := q.AsInt64()
	if !ok || v <= 0 {
		return 0, fmt.Errorf("%q must be a positive number of bytes", s)
	}
	return v, nil
}

// New returns a Rotator; Run starts it.
func New(cfg Config, rt Runtime) (*Rotator, error) {
	if cfg.List == nil || rt == nil {
		return nil, errors.New("logs: a container list and a runtime are required")
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.MaxFiles == 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.Period == 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.MaxSize < 0 || cfg.MaxFiles < 2 || cfg.Period < 0 {
		return nil, fmt.Errorf("logs: max size %d must be positive, max files %d at least 2, period %s positive", cfg.MaxSize, cfg.MaxFiles, cfg.Period)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &Rotator{cfg: cfg, rt: rt, failing: map[string]string{}}, nil
}

// Run rotates every Period until ctx ends.
func (r *Rotator) Run(ctx context.Context) {
	t := r.cfg.Clock.NewTicker(r.cfg.Period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if err := r.RotateOnce(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Log.WithError(err).Warn("cannot list containers for log rotation")
			}
		}
	}
}

// RotateOnce is one pass over the running containers. It returns only the listing's error;
// a container whose rotation fails is logged and retried at the next pass.
func (r *Rotator) RotateOnce(ctx context.Context) error {
	cs, err := r.cfg.List(ctx)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(cs))
	for _, c := range cs {
		if ctx.Err() != nil {
			return nil
		}
		seen[c.ID] = true
		log := r.cfg.Log.WithFields(logrus.Fields{"container": c.ID, "path": c.LogPath})
		err := r.rotate(ctx, c, log)
		switch {
		case err != nil && r.failing[c.ID] != err.Error():
			log.WithError(err).Warn("container log rotation failed")
			r.failing[c.ID] = err.Error()
		case err == nil && r.failing[c.ID] != "":
			log.Info("container log rotation works again")
			delete(r.failing, c.ID)
		}
	}
	for id := range r.failing {
		if !seen[id] {
			delete(r.failing, id)
		}
	}
	return nil
}

// rotate looks after one container's files: it removes rotated files beyond the count and,
// if the current file is too large, rotates it.
func (r *Rotator) rotate(ctx context.Context, c Container, log *logrus.Entry) error {
	if c.LogPath == "" || !filepath.IsAbs(c.LogPath) {
		return nil // the runtime was given no log path; nothing to rotate
	}
	rotated, err := rotatedFiles(c.LogPath)
	if err != nil {
		return err
	}
	rotated, err = removeOldest(rotated, r.cfg.MaxFiles-1)
	if err != nil {
		return err
	}
	st, err := os.Stat(c.LogPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // not created yet, or a rotation's reopen still pending
	}
	if err != nil {
		return err
	}
	if st.Size() <= r.cfg.MaxSize {
		return nil
	}
	target := c.LogPath + "." + r.cfg.Clock.Now().Format(timestampFormat)
	if _, err := os.Lstat(target); err == nil {
		return nil // rotated within the same second; the next pass gets a new name
	}
	// Room for the file rotated now: with it, rotated + current = MaxFiles.
	if _, err := removeOldest(rotated, r.cfg.MaxFiles-2); err != nil {
		return err
	}
	if err := os.Rename(c.LogPath, target); err != nil {
		return fmt.Errorf("rotate %s: %w", c.LogPath, err)
	}
	if err := r.rt.ReopenContainerLog(ctx, c.ID); err != nil {
		// Put the file back, so the next pass tries again and nothing is split off while the
		// runtime still writes to the old name. The runtime did not create a new file.
		if rerr := os.Rename(target, c.LogPath); rerr != nil {
			return fmt.Errorf("reopen log of container %s: %w (and renaming %s back: %v)", c.ID, err, target, rerr)
		}
		return fmt.Errorf("reopen log of container %s: %w", c.ID, err)
	}
	log.WithFields(logrus.Fields{"size": st.Size(), "rotated": filepath.Base(target)}).Debug("rotated container log")
	return nil
}

// rotatedFiles lists path's rotated files, oldest first.
func rotatedFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list rotated logs of %s: %w", path, err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		ts, ok := strings.CutPrefix(name, base+".")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if _, err := time.Parse(timestampFormat, ts); err != nil {
			continue // not ours
		}
		out = append(out, filepath.Join(dir, name))
	}
	sort.Strings(out)
	return out, nil
}

// removeOldest removes files from the front of files (oldest first) until at most keep are
// left, and returns those left.
func removeOldest(files []string, keep int) ([]string, error) {
	if keep < 0 {
		keep = 0
	}
	for len(files) > keep {
		if err := os.Remove(files[0]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return files, fmt.Errorf("remove rotated log: %w", err)
		}
		files = files[1:]
	}
	return files, nil
}
