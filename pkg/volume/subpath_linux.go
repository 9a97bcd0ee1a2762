package volume

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// errSymlinkOnPath is what the no-follow walks return when a path component is a symlink:
// the caller resolved the path a moment before, so a symlink now means someone swapped a
// directory for one in between.
var errSymlinkOnPath = errors.New("a path component changed into a symlink while it was being opened")

// openBeneath opens rel under the directory root one component at a time, never following a
// symlink, and returns an O_PATH descriptor of what it names. rel is clean and relative;
// "" or "." is root itself. Nothing a container does to the tree after this returns can change
// what the descriptor refers to, which is why subPath mounts bind the descriptor and not a path.
func openBeneath(root, rel string) (int, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", root, err)
	}
	walked := root
	for _, seg := range segments(rel) {
		walked += "/" + seg
		next, err := unix.Openat(fd, seg, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", walked, err)
		}
		if err := notSymlink(next, walked); err != nil {
			unix.Close(next)
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// mkdirBeneath creates the missing directories of rel under root with mode perm (whatever the
// umask), walking with no-follow opens like openBeneath. Existing components must be
// directories, not symlinks. The mode is set through a descriptor of the new directory, so a
// symlink planted in its place is never chmod-ed through.
func mkdirBeneath(root, rel string, perm uint32) error {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	defer func() { unix.Close(fd) }()
	walked := root
	for _, seg := range segments(rel) {
		walked += "/" + seg
		next, err := unix.Openat(fd, seg, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(fd, seg, perm); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("create %s: %w", walked, err)
			}
			next, err = unix.Openat(fd, seg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return fmt.Errorf("%s: %w", walked, errSymlinkOnPath)
			}
			if err != nil {
				return fmt.Errorf("open %s: %w", walked, err)
			}
			if err := unix.Fchmod(next, perm); err != nil {
				unix.Close(next)
				return fmt.Errorf("chmod %s: %w", walked, err)
			}
		} else if err != nil {
			return fmt.Errorf("open %s: %w", walked, err)
		} else if err := notSymlink(next, walked); err != nil {
			unix.Close(next)
			return err
		}
		unix.Close(fd)
		fd = next
	}
	return nil
}

// notSymlink fails when fd (opened O_PATH|O_NOFOLLOW) is a symlink itself.
func notSymlink(fd int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s: %w", path, errSymlinkOnPath)
	}
	return nil
}

// isDirFD reports whether fd refers to a directory.
func isDirFD(fd int) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

func closeFD(fd int) { unix.Close(fd) }

// segments splits a clean relative path into its elements, dropping "" and ".".
func segments(rel string) []string {
	var out []string
	for _, s := range strings.Split(rel, "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}

// nofollowFlag makes an open fail on a symlink instead of following it.
const nofollowFlag = unix.O_NOFOLLOW
