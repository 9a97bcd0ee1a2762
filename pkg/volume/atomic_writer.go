package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
	// maxPathLength and maxFileNameLength are the kubelet's atomic writer limits.
	maxPathLength     = 4096
	maxFileNameLength = 255
)

// file is one payload file of an atomic-writer volume.
type file struct {
	data []byte
	mode os.FileMode
}

// validatePath rejects a payload path that could escape the volume or clash with the writer's
// own entries: it must be relative, contain no '..' element and not start with '..'.
func validatePath(p string) error {
	if p == "" {
		return errors.New("invalid path: must not be empty")
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("invalid path %q: must be a relative path", p)
	}
	if len(p) > maxPathLength {
		return fmt.Errorf("invalid path %q: must be at most %d characters", p, maxPathLength)
	}
	items := strings.Split(p, "/")
	for _, item := range items {
		if item == ".." {
			return fmt.Errorf("invalid path %q: must not contain '..'", p)
		}
		if len(item) > maxFileNameLength {
			return fmt.Errorf("invalid path %q: each element must be at most %d characters", p, maxFileNameLength)
		}
		if strings.ContainsRune(item, 0) {
			return fmt.Errorf("invalid path %q: must not contain NUL", p)
		}
	}
	if strings.HasPrefix(items[0], "..") {
		return fmt.Errorf("invalid path %q: must not start with '..'", p)
	}
	if filepath.Clean(p) == "." {
		return fmt.Errorf("invalid path %q: names no file", p)
	}
	return nil
}

// payloadBuilder collects a payload, rejecting invalid, duplicate and nested-conflicting paths.
type payloadBuilder map[string]file

func (b payloadBuilder) add(p string, data []byte, mode int32) error {
	if err := validatePath(p); err != nil {
		return err
	}
	if mode < 0 || mode > 0o777 {
		return fmt.Errorf("path %q: mode %#o is not between 0 and 0777", p, mode)
	}
	p = filepath.Clean(p)
	if _, dup := b[p]; dup {
		return fmt.Errorf("path %q: used by more than one item", p)
	}
	b[p] = file{data: data, mode: os.FileMode(mode)}
	return nil
}

// check rejects a payload in which one path is a directory of another ("a" and "a/b").
func (b payloadBuilder) check() error {
	paths := make([]string, 0, len(b))
	for p := range b {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for i := 1; i < len(paths); i++ {
		if strings.HasPrefix(paths[i], paths[i-1]+"/") {
			return fmt.Errorf("paths %q and %q conflict: one is a file, the other needs it as a directory", paths[i-1], paths[i])
		}
	}
	return nil
}

// writeAtomic makes dir hold exactly payload, the kubelet's way: when the payload differs from
// the current generation it writes a new timestamped directory and renames a new ..data symlink
// over the old one, so a reader resolving a key sees one whole generation. It then makes sure
// each top-level entry is a symlink into ..data and removes stale entries and old generations;
// that part also repairs whatever a crash left half done. It reports whether it wrote a new
// generation.
func writeAtomic(dir string, payload map[string]file) (bool, error) {
	for p := range payload {
		if err := validatePath(p); err != nil {
			return false, err
		}
	}
	if err := payloadBuilder(payload).check(); err != nil {
		return false, err
	}
	current, err := os.Readlink(filepath.Join(dir, dataDirName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", filepath.Join(dir, dataDirName), err)
	}
	if strings.Contains(current, "/") {
		current = "" // not one of ours: replace it
	}
	written := false
	if current == "" || !generationMatches(filepath.Join(dir, current), payload) {
		gen, err := writeGeneration(dir, payload)
		if err != nil {
			return false, err
		}
		tmp := filepath.Join(dir, newDataDirName)
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("remove %s: %w", tmp, err)
		}
		if err := os.Symlink(gen, tmp); err != nil {
			return false, fmt.Errorf("create %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, dataDirName)); err != nil {
			return false, fmt.Errorf("publish %s: %w", filepath.Join(dir, dataDirName), err)
		}
		current, written = gen, true
	}

	visible := map[string]bool{}
	for p := range payload {
		visible[strings.SplitN(p, "/", 2)[0]] = true
	}
	for name := range visible {
		if err := ensureLink(dir, name); err != nil {
			return written, err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return written, fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == dataDirName || name == current || visible[name] {
			continue
		}
		// An old generation, a leftover temporary link, or a key no longer in the payload.
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return written, fmt.Errorf("remove stale %s: %w", filepath.Join(dir, name), err)
		}
	}
	return written, nil
}

// writeGeneration writes payload into a new timestamped directory of dir and returns its name.
func writeGeneration(dir string, payload map[string]file) (string, error) {
	gen, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return "", fmt.Errorf("create generation in %s: %w", dir, err)
	}
	fail := func(err error) (string, error) {
		os.RemoveAll(gen)
		return "", err
	}
	// Group and other must be able to traverse, whatever the umask.
	if err := os.Chmod(gen, 0o755); err != nil {
		return fail(err)
	}
	for p, f := range payload {
		full := filepath.Join(gen, p)
		if err := mkdirAllMode(gen, filepath.Dir(p)); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(full, f.data, f.mode); err != nil {
			return fail(fmt.Errorf("write %s: %w", full, err))
		}
		if err := os.Chmod(full, f.mode); err != nil {
			return fail(fmt.Errorf("chmod %s: %w", full, err))
		}
	}
	return filepath.Base(gen), nil
}

// mkdirAllMode creates the relative directory rel under base, each new element 0755.
func mkdirAllMode(base, rel string) error {
	if rel == "." {
		return nil
	}
	cur := base
	for _, el := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, el)
		if err := os.Mkdir(cur, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return fmt.Errorf("create %s: %w", cur, err)
		}
		if err := os.Chmod(cur, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// generationMatches reports whether the generation directory gen holds exactly payload
// (contents and modes).
func generationMatches(gen string, payload map[string]file) bool {
	n := 0
	err := filepath.WalkDir(gen, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(gen, p)
		if err != nil {
			return err
		}
		want, ok := payload[rel]
		if !ok || !d.Type().IsRegular() {
			return fs.ErrInvalid
		}
		fi, err := d.Info()
		if err != nil || fi.Mode().Perm() != want.mode || fi.Size() != int64(len(want.data)) {
			return fs.ErrInvalid
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want.data) {
			return fs.ErrInvalid
		}
		n++
		return nil
	})
	return err == nil && n == len(payload)
}

// ensureLink makes dir/name the symlink ..data/name, replacing whatever else is there atomically.
func ensureLink(dir, name string) error {
	target := filepath.Join(dataDirName, name)
	link := filepath.Join(dir, name)
	if got, err := os.Readlink(link); err == nil && got == target {
		return nil
	}
	if fi, err := os.Lstat(link); err == nil && fi.IsDir() {
		if err := os.RemoveAll(link); err != nil {
			return fmt.Errorf("remove %s: %w", link, err)
		}
	}
	tmp := filepath.Join(dir, "..link_tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", tmp, err)
	}
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("create %s: %w", link, err)
	}
	return nil
}
