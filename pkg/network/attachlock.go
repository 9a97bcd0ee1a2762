package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Attachment lock files, one per attachment under <state>/attachments/, are two things:
//
//   - A lock every process takes exclusively before running plugins for the attachment (ADD
//     and DEL), and hands down to those plugins (pluginExec). The flock is released when the
//     last process holding it exits, so a DEL that follows an agent killed in the middle of
//     an ADD waits until no process of that ADD is left, instead of racing it.
//   - An inventory: the file is created before ADD runs any plugin and removed once a DEL has
//     succeeded, so an ADD that was killed before libcni cached its result is still known to
//     GC, which can then undo what it left (result cache entries only exist for ADDs that
//     finished).
//
// A held lock means the attachment is in use: GC never collects it. The file holds an
// attachmentRecord, so GC can read what it is about without parsing names.
const attachmentsDirName = "attachments"

// AttachmentDir is the state directory's directory of attachment lock files.
func AttachmentDir(stateDir string) string { return filepath.Join(stateDir, attachmentsDirName) }

// attachmentRecord is the content of an attachment lock file.
type attachmentRecord struct {
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

func (a attachmentRecord) key() attachmentKey {
	return attachmentKey{containerID: a.ContainerID, ifName: a.IfName}
}

// attachmentLockPath names the lock file the way libcni names its cache entries.
func attachmentLockPath(dir string, rec attachmentRecord) string {
	return filepath.Join(dir, rec.Network+"-"+rec.ContainerID+"-"+rec.IfName)
}

// heldAttachment is an attachment lock this process holds.
type heldAttachment struct {
	f    *os.File // nil when the runner has no attachment dir
	path string
	rec  attachmentRecord
}

// file is what the call's plugins inherit; nil for no lock.
func (h *heldAttachment) file() *os.File { return h.f }

// release drops the lock and keeps the file: the attachment stays in the inventory.
func (h *heldAttachment) release() {
	if h.f != nil {
		h.f.Close() // closing the last descriptor of this process releases the flock
		h.f = nil
	}
}

// remove takes the attachment out of the inventory, then drops the lock. Whoever waits on
// the removed file notices (lockAttachment checks the path still names the file it locked).
func (h *heldAttachment) remove() error {
	if h.f == nil {
		return nil
	}
	err := os.Remove(h.path)
	h.release()
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// attachmentLockPoll bounds how often a waiting call retries a busy lock. Contention is rare
// (CNI calls for one attachment are serialized by the runtime, and within a process by
// Runner.lock): it means the processes of a call some other process started are still
// running, and they end within milliseconds once that process is gone.
const attachmentLockPoll = 20 * time.Millisecond

// lockAttachment takes rec's lock exclusively, creating the file with rec in it if needed,
// and waits for it until ctx ends. An empty dir means no lock (held.file() is nil).
func lockAttachment(ctx context.Context, dir string, rec attachmentRecord) (*heldAttachment, error) {
	if dir == "" {
		return &heldAttachment{rec: rec}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("attachment lock dir: %w", err)
	}
	path := attachmentLockPath(dir, rec)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open attachment lock: %w", err)
		}
		if err := flockWait(ctx, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock attachment %s/%s: %w", rec.ContainerID, rec.IfName, err)
		}
		if !stillAt(f, path) {
			// Removed (a DEL or GC finished) while we waited: lock the file now there.
			f.Close()
			continue
		}
		h := &heldAttachment{f: f, path: path, rec: rec}
		if err := h.writeRecord(); err != nil {
			h.release()
			return nil, err
		}
		return h, nil
	}
}

// tryLockAttachment takes the lock of an existing file without waiting. ok is false when
// another process holds it, or the file is gone.
func tryLockAttachment(path string) (h *heldAttachment, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open attachment lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EINTR) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	if !stillAt(f, path) {
		f.Close()
		return nil, false, nil
	}
	h = &heldAttachment{f: f, path: path}
	return h, true, nil
}

// writeRecord fills a new (empty) lock file with the record.
func (h *heldAttachment) writeRecord() error {
	st, err := h.f.Stat()
	if err != nil {
		return fmt.Errorf("attachment lock: %w", err)
	}
	if st.Size() > 0 {
		return nil
	}
	b, err := json.Marshal(h.rec)
	if err != nil {
		return fmt.Errorf("attachment lock: %w", err)
	}
	if _, err := h.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write attachment lock %s: %w", h.path, err)
	}
	return nil
}

// attachmentLocks lists the lock files in dir with the record each holds; files of other
// networks and files without a readable record (a process died between creating and
// writing) are left out.
func attachmentLocks(dir, network string) (map[string]attachmentRecord, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || dir == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list attachment locks: %w", err)
	}
	out := map[string]attachmentRecord{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue // removed since the listing
		}
		var rec attachmentRecord
		if json.Unmarshal(b, &rec) != nil || rec.Network != network || rec.ContainerID == "" {
			continue
		}
		out[p] = rec
	}
	return out, nil
}

// flockWait takes f's flock exclusively, polling until ctx ends: a blocking flock could not
// be given up when the caller's deadline passes.
func flockWait(ctx context.Context, f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still held by the processes of an earlier call: %w", ctx.Err())
		case <-time.After(attachmentLockPoll):
		}
	}
}

// stillAt reports whether path still names the file f has open.
func stillAt(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}
