package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"k8s.io/apimachinery/pkg/types"
)

// TearDown unmounts the pod's staged subPath mounts and every tmpfs of the pod, and removes
// RootDir/pods/<uid> entirely. It never follows a symlink out of the pod directory and refuses
// to descend into another filesystem (a mount it could not undo), so hostPath targets and
// anything mounted inside a volume are never touched. It works from what is on disk alone and is idempotent.
func (m *Manager) TearDown(uid types.UID) error {
	if err := checkElement("pod UID", string(uid)); err != nil {
		return err
	}
	podDir := m.podDir(uid)
	fi, err := os.Lstat(podDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tear down volumes of pod %s: %w", uid, err)
	}
	if !fi.IsDir() {
		if err := os.Remove(podDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tear down volumes of pod %s: %w", uid, err)
		}
		return nil
	}
	// Staged subPaths first: they are bind mounts from the same filesystem, which removeTree's
	// device check cannot see, so the tree is never walked while one is still mounted.
	if err := m.cleanupSubPaths(podDir); err != nil {
		return fmt.Errorf("tear down volumes of pod %s: %w", uid, err)
	}
	if err := m.unmountVolumes(filepath.Join(podDir, "volumes")); err != nil {
		return fmt.Errorf("tear down volumes of pod %s: %w", uid, err)
	}
	if err := removeTree(podDir, deviceOf(fi)); err != nil {
		return fmt.Errorf("tear down volumes of pod %s: %w", uid, err)
	}
	m.log.WithField("podUID", uid).Debug("pod volumes removed")
	return nil
}

// unmountVolumes unmounts each volumes/<plugin>/<name> that is a mount point.
func (m *Manager) unmountVolumes(volumesDir string) error {
	plugins, err := os.ReadDir(volumesDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range plugins {
		if !p.IsDir() { // a symlink is not followed
			continue
		}
		pluginDir := filepath.Join(volumesDir, p.Name())
		vols, err := os.ReadDir(pluginDir)
		if err != nil {
			return err
		}
		for _, v := range vols {
			if !v.IsDir() {
				continue
			}
			// A volume mounted twice (a crash between mount and record, say) unmounts twice.
			if err := m.unmountAll(filepath.Join(pluginDir, v.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTree removes path and everything below it without following symlinks; it refuses a
// directory on another device than dev (a mount point) rather than empty someone's filesystem.
func removeTree(path string, dev uint64) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if d := deviceOf(fi); d != dev {
			return fmt.Errorf("refusing to remove %s: another filesystem is mounted there", path)
		}
		entries, err := os.ReadDir(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		var errs []error
		for _, e := range entries {
			if err := removeTree(filepath.Join(path, e.Name()), dev); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func deviceOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev) //nolint:unconvert // int32 on some platforms
	}
	return 0
}

// PodsOnDisk lists the UIDs that have a directory under RootDir/pods, for cleaning up after a
// crash.
func (m *Manager) PodsOnDisk() ([]types.UID, error) {
	entries, err := os.ReadDir(m.podsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", m.podsDir, err)
	}
	var uids []types.UID
	for _, e := range entries {
		if e.IsDir() {
			uids = append(uids, types.UID(e.Name()))
		}
	}
	return uids, nil
}
