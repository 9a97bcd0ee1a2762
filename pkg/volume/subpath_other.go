//go:build !linux

package volume

func openBeneath(string, string) (int, error)   { return -1, errNotLinux }
func mkdirBeneath(string, string, uint32) error { return errNotLinux }
func isDirFD(int) (bool, error)                 { return false, errNotLinux }
func closeFD(int)                               {}

const nofollowFlag = 0
