package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Mounts builds c's CRI mounts from its volumeMounts and the host paths SetUp returned.
// configMap, secret, downwardAPI and projected volumes are always read-only, as in the
// kubelet. A subPath (or subPathExpr, expanded from c's literal env values and pod metadata) is
// resolved safely: it must be relative without '..', once symlinks are resolved it must stay
// inside the volume, and the runtime gets a staged bind mount of what was checked, never the
// path itself (stageSubPath). For emptyDir and hostPath a missing subPath is created as a
// directory with the volume root's mode (as the kubelet); for the other volumes it must resolve
// through ..data to what is there now, so such a mount does not follow later updates (as in
// Kubernetes). Call it right before the container is created: the staged mounts are redone on
// every call and released by TearDown.
func (mgr *Manager) Mounts(pod *v1.Pod, c *v1.Container, paths map[string]string) ([]*runtimeapi.Mount, error) {
	vols := make(map[string]*v1.Volume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	var out []*runtimeapi.Mount
	for i := range c.VolumeMounts {
		vm := &c.VolumeMounts[i]
		m, err := mgr.mount(pod, c, i, vm, vols[vm.Name], paths)
		if err != nil {
			return nil, fmt.Errorf("container %q: volumeMounts[%d] (volume %q): %w", c.Name, i, vm.Name, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func (mgr *Manager) mount(pod *v1.Pod, c *v1.Container, index int, vm *v1.VolumeMount, vol *v1.Volume, paths map[string]string) (*runtimeapi.Mount, error) {
	if vol == nil {
		return nil, errors.New("the pod has no volume of that name")
	}
	host, ok := paths[vm.Name]
	if !ok || host == "" {
		return nil, errors.New("the volume is not set up")
	}
	if vm.MountPath == "" {
		return nil, errors.New("mountPath is required")
	}
	if vm.SubPath != "" && vm.SubPathExpr != "" {
		return nil, errors.New("subPath and subPathExpr are mutually exclusive")
	}
	subPath := vm.SubPath
	if vm.SubPathExpr != "" {
		var err error
		if subPath, err = expandSubPath(pod, c, vm.SubPathExpr); err != nil {
			return nil, err
		}
	}
	atomic := isAtomicWriter(vol)
	if subPath != "" {
		var err error
		if host, err = mgr.stageSubPath(pod.UID, vm.Name, c.Name, index, host, subPath, !atomic); err != nil {
			return nil, err
		}
	}
	m := &runtimeapi.Mount{
		ContainerPath: vm.MountPath,
		HostPath:      host,
		Readonly:      vm.ReadOnly || atomic,
	}
	switch {
	case vm.MountPropagation == nil || *vm.MountPropagation == v1.MountPropagationNone:
		m.Propagation = runtimeapi.MountPropagation_PROPAGATION_PRIVATE
	case *vm.MountPropagation == v1.MountPropagationHostToContainer:
		m.Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
	case *vm.MountPropagation == v1.MountPropagationBidirectional:
		if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
			return nil, errors.New("Bidirectional mount propagation is available only to privileged containers")
		}
		m.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	default:
		return nil, fmt.Errorf("mountPropagation %q is not valid (None, HostToContainer, Bidirectional)", *vm.MountPropagation)
	}
	if vm.RecursiveReadOnly != nil {
		switch *vm.RecursiveReadOnly {
		case v1.RecursiveReadOnlyDisabled:
		case v1.RecursiveReadOnlyIfPossible:
			// Best effort by definition: a plain read-only mount.
		case v1.RecursiveReadOnlyEnabled:
			if !vm.ReadOnly || m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, errors.New("recursiveReadOnly: Enabled needs readOnly: true and mountPropagation None")
			}
			m.RecursiveReadOnly = true
		default:
			return nil, fmt.Errorf("recursiveReadOnly %q is not valid (Disabled, IfPossible, Enabled)", *vm.RecursiveReadOnly)
		}
	}
	return m, nil
}

func isAtomicWriter(vol *v1.Volume) bool {
	s := &vol.VolumeSource
	return s.ConfigMap != nil || s.Secret != nil || s.DownwardAPI != nil || s.Projected != nil
}

// resolveSubPath resolves subPath under the volume root root: every symlink on the way is
// resolved and must stay inside the volume. It returns the root's real path, subPath's real path
// relative to it, and the root's mode (what created elements get). With create the tail of that
// path may not exist yet (mkdirBeneath makes it); without it a missing element is an error.
// Nothing here is trusted later: stageSubPath opens the result again without following symlinks.
func resolveSubPath(root, subPath string, create bool) (realRoot, rel string, mode fs.FileMode, err error) {
	if filepath.IsAbs(subPath) {
		return "", "", 0, fmt.Errorf("subPath %q must be a relative path", subPath)
	}
	for _, el := range strings.Split(subPath, "/") {
		if el == ".." {
			return "", "", 0, fmt.Errorf("subPath %q must not contain '..'", subPath)
		}
	}
	if realRoot, err = filepath.EvalSymlinks(root); err != nil {
		return "", "", 0, fmt.Errorf("subPath %q: resolve volume root: %w", subPath, err)
	}
	rootInfo, err := os.Stat(realRoot)
	if err != nil {
		return "", "", 0, fmt.Errorf("subPath %q: %w", subPath, err)
	}
	cur := realRoot
	els := segments(filepath.Clean(subPath))
walk:
	for i, el := range els {
		next := filepath.Join(cur, el)
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist) && create:
			if !rootInfo.IsDir() {
				return "", "", 0, fmt.Errorf("subPath %q: the volume is not a directory", subPath)
			}
			// The rest does not exist yet: it contains no symlink to resolve.
			cur = filepath.Join(append([]string{cur}, els[i:]...)...)
			break walk
		case errors.Is(err, fs.ErrNotExist):
			return "", "", 0, fmt.Errorf("subPath %q does not exist in the volume", subPath)
		case err != nil:
			return "", "", 0, fmt.Errorf("subPath %q: %w", subPath, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			resolved, err := filepath.EvalSymlinks(next)
			if err != nil {
				return "", "", 0, fmt.Errorf("subPath %q: resolve %s: %w", subPath, next, err)
			}
			if !within(realRoot, resolved) {
				return "", "", 0, fmt.Errorf("subPath %q escapes the volume: %s resolves to %s", subPath, next, resolved)
			}
			next = resolved
		}
		cur = next
	}
	if rel, err = filepath.Rel(realRoot, cur); err != nil {
		return "", "", 0, fmt.Errorf("subPath %q: %w", subPath, err)
	}
	return realRoot, rel, rootInfo.Mode().Perm(), nil
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

// expandSubPath expands $(VAR) in a subPathExpr from c's env (literal values and the pod
// metadata fieldRefs); $$ is a literal $. A reference it cannot resolve is an error.
func expandSubPath(pod *v1.Pod, c *v1.Container, expr string) (string, error) {
	vars := map[string]string{}
	unresolved := map[string]bool{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
			delete(unresolved, e.Name)
		case e.ValueFrom.FieldRef != nil:
			if v, err := FieldValue(pod, e.ValueFrom.FieldRef.FieldPath); err == nil {
				vars[e.Name] = v
				delete(unresolved, e.Name)
				continue
			}
			fallthrough
		default:
			delete(vars, e.Name)
			unresolved[e.Name] = true
		}
	}
	var sb strings.Builder
	for i := 0; i < len(expr); i++ {
		if expr[i] != '$' || i+1 >= len(expr) {
			sb.WriteByte(expr[i])
			continue
		}
		switch expr[i+1] {
		case '$':
			sb.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(expr[i+2:], ')')
			if end < 0 {
				sb.WriteString(expr[i:])
				i = len(expr)
				continue
			}
			name := expr[i+2 : i+2+end]
			v, ok := vars[name]
			if !ok {
				if unresolved[name] {
					return "", fmt.Errorf("subPathExpr %q: env %q has a valueFrom this agent cannot resolve for a path", expr, name)
				}
				return "", fmt.Errorf("subPathExpr %q: no env %q in the container", expr, name)
			}
			sb.WriteString(v)
			i += 2 + end
		default:
			sb.WriteByte('$')
		}
	}
	return sb.String(), nil
}
