package volume

// Mounter is the seam for mount(2); tests fake it.
type Mounter interface {
	// MountTmpfs mounts a fresh tmpfs on target; sizeBytes 0 means no limit.
	MountTmpfs(target string, sizeBytes int64) error
	// BindMount bind-mounts source onto target (an existing file or directory); stageSubPath
	// passes /proc/self/fd/N, so the mount shows what the descriptor refers to.
	BindMount(source, target string) error
	// Unmount unmounts target; a target that is not mounted is not an error.
	Unmount(target string) error
	// IsMountPoint reports whether path is a mount point.
	IsMountPoint(path string) (bool, error)
}
