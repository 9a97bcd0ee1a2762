package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/apimachinery/pkg/types"
)

// subPathsDirName is the directory under a pod's directory where subPath mounts are staged,
// as <volume>/<container>/<mount index>: the kubelet's layout. Only the agent writes there;
// containers never see it.
const subPathsDirName = "volume-subpaths"

// stageSubPath makes subPath of the volume at root safe to hand to the runtime. It resolves
// the path (symlinks must stay inside the volume), creates what is missing when create is set,
// then opens the result one component at a time without following symlinks and bind-mounts
// that descriptor onto the container's staging path, which it returns. The runtime mounts the
// staging path later; whatever a container does to the volume in between, the staging path
// stays bound to what was checked. A component swapped for a symlink during the walk fails the
// call, and the container creation is retried. The staging path is re-bound on every call, so
// a restarted container sees what its subPath names now.
func (m *Manager) stageSubPath(uid types.UID, volume, container string, index int, root, subPath string, create bool) (string, error) {
	if err := checkElement("container name", container); err != nil {
		return "", err
	}
	realRoot, rel, mode, err := resolveSubPath(root, subPath, create)
	if err != nil {
		return "", err
	}
	if create {
		if err := mkdirBeneath(realRoot, rel, uint32(mode)); err != nil {
			return "", fmt.Errorf("subPath %q: %w", subPath, err)
		}
	}
	fd, err := openBeneath(realRoot, rel)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", subPath, err)
	}
	defer closeFD(fd)
	dir, err := isDirFD(fd)
	if err != nil {
		return "", fmt.Errorf("subPath %q: stat: %w", subPath, err)
	}
	target := filepath.Join(m.podDir(uid), subPathsDirName, volume, container, strconv.Itoa(index))
	if err := m.prepareStaging(target, dir); err != nil {
		return "", fmt.Errorf("subPath %q: %w", subPath, err)
	}
	if err := m.mounter.BindMount(fmt.Sprintf("/proc/self/fd/%d", fd), target); err != nil {
		return "", fmt.Errorf("subPath %q: %w", subPath, err)
	}
	return target, nil
}

// prepareStaging leaves target unmounted and existing as an empty directory (dir) or an empty
// file, ready to be mounted over.
func (m *Manager) prepareStaging(target string, dir bool) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(target), err)
	}
	if err := m.unmountAll(target); err != nil {
		return err
	}
	fi, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case fi.IsDir() == dir && (dir || fi.Mode().IsRegular()):
		return nil
	default: // what the subPath names changed kind since the last container
		if err := os.Remove(target); err != nil {
			return fmt.Errorf("replace %s: %w", target, err)
		}
	}
	if dir {
		if err := os.Mkdir(target, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", target, err)
		}
		return nil
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	return f.Close()
}

// unmountAll unmounts target until nothing is mounted there: a crash between two mounts may
// have stacked them. Staged subPaths and tmpfs volumes alike.
func (m *Manager) unmountAll(target string) error {
	for range 8 {
		mounted, err := m.mounter.IsMountPoint(target)
		if err != nil {
			return fmt.Errorf("check mount %s: %w", target, err)
		}
		if !mounted {
			return nil
		}
		if err := m.mounter.Unmount(target); err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		m.log.WithField("path", target).Debug("unmounted")
	}
	return fmt.Errorf("%s is still mounted after unmounting it 8 times", target)
}

// cleanupSubPaths unmounts and removes every staged subPath of the pod directory podDir. It
// only ever unmounts and removes single entries (never a tree), so if something is still
// mounted it fails instead of deleting what the mount shows, and the pod directory is left.
func (m *Manager) cleanupSubPaths(podDir string) error {
	base := filepath.Join(podDir, subPathsDirName)
	vols, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, v := range vols {
		volDir := filepath.Join(base, v.Name())
		if !v.IsDir() { // nothing the agent made; removed without following it
			if err := os.Remove(volDir); err != nil {
				return err
			}
			continue
		}
		ctrs, err := os.ReadDir(volDir)
		if err != nil {
			return err
		}
		for _, c := range ctrs {
			ctrDir := filepath.Join(volDir, c.Name())
			if c.IsDir() {
				if err := m.cleanupStagedMounts(ctrDir); err != nil {
					return err
				}
			}
			if err := os.Remove(ctrDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", ctrDir, err)
			}
		}
		if err := os.Remove(volDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", volDir, err)
		}
	}
	if err := os.Remove(base); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", base, err)
	}
	return nil
}

// cleanupStagedMounts unmounts and removes the staged mounts (one per mount index) in dir.
func (m *Manager) cleanupStagedMounts(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := m.unmountAll(p); err != nil {
			return err
		}
		// Remove, not RemoveAll: an unmounted staging path is empty, and anything else is
		// not ours to delete.
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", p, err)
		}
		m.log.WithField("path", p).Debug("subPath mount removed")
	}
	return nil
}
