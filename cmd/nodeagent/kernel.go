package main

import (
	"os"
	"strings"
)

// kernelRelease is the running kernel's release, as `uname -r` prints it; "" if unreadable
// (the sysctls that need a newer kernel are then left out of the safe set).
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
