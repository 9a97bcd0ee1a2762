package volume

// Mounter is the seam for mount(2); tests fake it.
type Mounter interface {
	// MountTmpfs mounts a fresh tmpfs on target; sizeBytes 0 means no limit.
	MountTmpfs(target string, sizeBytes int64) error
	// Unmount unmounts target; a target that is not mounted is not an error.
	Unmount(target string) error
	// IsMountPoint reports whether path is a mount point.
	IsMountPoint(path string) (bool, error)
}
