package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The node network's state directory, shared by the agent and the delegate processes that
// containerd starts:
//
//	<dir>/network.json  the list the agent runs and where its plugins are; written by the agent
//	                    at start, read by a delegate that has to DEL without the agent
//	<dir>/cache/        libcni's result cache (prevResult for DEL and CHECK, GC's inventory)
//	<dir>/lock          flock: ADD and DEL hold it shared, GC exclusive, across processes
//
// Every process that runs the list for pods of this node uses the same directory, the way
// every CNI user of a node shares /var/lib/cni: then any of them can DEL what another ADDed,
// and a GC in one never frees an address another is handing out.
const (
	stateFileName = "network.json"
	cacheDirName  = "cache"
	lockFileName  = "lock"
)

// DefaultStateDir is the state directory when neither the agent's flags nor the delegate's
// config name one.
const DefaultStateDir = "/var/lib/nodeagent/cni"

// savedNetwork is network.json.
type savedNetwork struct {
	BinDirs  []string        `json:"binDirs"`
	Conflist json.RawMessage `json:"conflist"`
}

// CacheDir is where a Runner for the state directory keeps libcni's result cache.
func CacheDir(stateDir string) string { return filepath.Join(stateDir, cacheDirName) }

// LockFile is the state directory's cross-process lock file.
func LockFile(stateDir string) string { return filepath.Join(stateDir, lockFileName) }

// SaveNetwork records the list the agent runs in stateDir (atomically: a delegate reading it
// sees the old or the new file, never half of one).
func SaveNetwork(stateDir string, n *Network) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("CNI state dir: %w", err)
	}
	b, err := json.MarshalIndent(savedNetwork{BinDirs: n.binDirs, Conflist: n.list.Bytes}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", stateFileName, err)
	}
	path := filepath.Join(stateDir, stateFileName)
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadSavedNetwork reads the list SaveNetwork recorded in stateDir and validates it again
// (plugins may have been removed since).
func LoadSavedNetwork(stateDir string) (*Network, error) {
	path := filepath.Join(stateDir, stateFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the agent's saved network: %w", err)
	}
	var s savedNetwork
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read the agent's saved network %s: %w", path, err)
	}
	return LoadNetwork(s.Conflist, s.BinDirs)
}

// flock takes an advisory lock on path (created if missing) and returns its release. how is
// unix.LOCK_SH or unix.LOCK_EX. The lock dies with the process, so a crashed holder never
// wedges the others.
func flock(path string, how int) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open CNI lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
