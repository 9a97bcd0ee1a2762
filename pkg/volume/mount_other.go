//go:build !linux

package volume

import "errors"

var errNotLinux = errors.New("volume mounts need Linux")

type hostMounter struct{}

// HostMounter returns the Mounter that calls mount(2); off Linux every call fails.
func HostMounter() Mounter { return hostMounter{} }

func (hostMounter) MountTmpfs(string, int64) error    { return errNotLinux }
func (hostMounter) BindMount(string, string) error    { return errNotLinux }
func (hostMounter) Unmount(string) error              { return errNotLinux }
func (hostMounter) IsMountPoint(string) (bool, error) { return false, errNotLinux }
