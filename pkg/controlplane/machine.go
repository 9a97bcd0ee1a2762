package controlplane

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine is the seam in front of the host readings the Node object is made of: identity
// (nodeInfo), capacity, and the pressure conditions. Tests provide a fake; HostMachine reads
// the real host.
type Machine interface {
	// Info is the host's identity and size. It is read once, at registration: none of it
	// changes while the agent runs (a new boot ID means a new agent process). When some item
	// cannot be read, Info returns the others with an error naming what is missing.
	Info() (MachineInfo, error)
	// Memory is read on every status check.
	Memory() (MemoryStats, error)
	// Filesystem is the filesystem holding path, or holding its nearest existing parent when
	// path does not exist yet.
	Filesystem(path string) (FilesystemStats, error)
	// Processes counts the host's tasks against the kernel's limit.
	Processes() (ProcessStats, error)
}

// MachineInfo is the host's identity and size, as nodeInfo and capacity report them.
type MachineInfo struct {
	CPUs          int    // logical CPUs online
	MachineID     string // /etc/machine-id
	SystemUUID    string // the DMI product UUID; empty where there is none or it is unreadable
	BootID        string
	KernelVersion string // the release, as `uname -r` prints it
	OSImage       string // PRETTY_NAME of os-release
}

// MemoryStats are /proc/meminfo's totals, in bytes.
type MemoryStats struct {
	Total     uint64
	Available uint64
}

// FilesystemStats are a filesystem's sizes from statfs. Inodes is zero on filesystems that
// do not count inodes (btrfs, for one).
type FilesystemStats struct {
	Capacity   uint64 // bytes
	Available  uint64 // bytes available to unprivileged users
	Inodes     uint64
	InodesFree uint64
}

// ProcessStats compares the tasks (threads: each one takes a PID) running on the host with
// the most the kernel allows.
type ProcessStats struct {
	Running uint64
	Max     uint64 // the lower of kernel.pid_max and kernel.threads-max
}

// HostMachine returns the Machine that reads this host: /proc, /sys and /etc.
func HostMachine() Machine { return hostMachine{root: "/"} }

// hostMachine reads files under root ("/" but in tests); only statfs is not relative to it.
type hostMachine struct{ root string }

var _ Machine = hostMachine{}

func (m hostMachine) path(p string) string { return filepath.Join(m.root, p) }

func (m hostMachine) readTrimmed(p string) (string, error) {
	b, err := os.ReadFile(m.path(p))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (m hostMachine) Info() (MachineInfo, error) {
	var errs []error
	info := MachineInfo{CPUs: m.cpus()}
	var err error
	// systemd writes /etc/machine-id; D-Bus's copy is the older location.
	if info.MachineID, err = m.readTrimmed("/etc/machine-id"); err != nil || info.MachineID == "" {
		if info.MachineID, err = m.readTrimmed("/var/lib/dbus/machine-id"); err != nil {
			errs = append(errs, fmt.Errorf("machine ID: %w", err))
		}
	}
	// Only root may read product_uuid, and many machines (ARM boards, some VMs) have no DMI:
	// an empty systemUUID is what the kubelet reports there too.
	info.SystemUUID, _ = m.readTrimmed("/sys/class/dmi/id/product_uuid")
	if info.BootID, err = m.readTrimmed("/proc/sys/kernel/random/boot_id"); err != nil {
		errs = append(errs, fmt.Errorf("boot ID: %w", err))
	}
	// The same string as uname(2)'s release, but readable under a test root.
	if info.KernelVersion, err = m.readTrimmed("/proc/sys/kernel/osrelease"); err != nil {
		errs = append(errs, fmt.Errorf("kernel version: %w", err))
	}
	info.OSImage = m.osImage()
	return info, errors.Join(errs...)
}

// cpus counts the CPUs in /sys/devices/system/cpu/online ("0-3,8-11"). runtime.NumCPU is
// the fallback only: it counts the CPUs this process may run on, which a systemd CPUAffinity
// or a cpuset narrows, and capacity is the node's, not the agent's.
func (m hostMachine) cpus() int {
	s, err := m.readTrimmed("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n, err := countCPUList(s)
	if err != nil || n == 0 {
		return runtime.NumCPU()
	}
	return n
}

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,8,10-11".
func countCPUList(s string) (int, error) {
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("cpu list %q: %w", s, err)
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if last < first {
			return 0, fmt.Errorf("cpu list %q: bad range %q", s, part)
		}
		n += last - first + 1
	}
	return n, nil
}

// osImage is os-release's PRETTY_NAME, "Linux" when there is none (as cAdvisor reports it).
func (m hostMachine) osImage() string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		b, err := os.ReadFile(m.path(p))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME=")
			if !ok {
				continue
			}
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			} else {
				v = strings.Trim(v, `'"`)
			}
			if v != "" {
				return v
			}
		}
		break
	}
	return "Linux"
}

func (m hostMachine) Memory() (MemoryStats, error) {
	b, err := os.ReadFile(m.path("/proc/meminfo"))
	if err != nil {
		return MemoryStats{}, fmt.Errorf("read meminfo: %w", err)
	}
	fields := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// "MemAvailable:   12345678 kB"
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		fields[name] = v
	}
	total, ok := fields["MemTotal"]
	if !ok {
		return MemoryStats{}, errors.New("read meminfo: no MemTotal")
	}
	avail, ok := fields["MemAvailable"]
	if !ok {
		// Kernels before 3.14 lack MemAvailable; this is the estimate it replaced.
		avail = fields["MemFree"] + fields["Buffers"] + fields["Cached"]
	}
	return MemoryStats{Total: total, Available: avail}, nil
}

func (m hostMachine) Filesystem(path string) (FilesystemStats, error) {
	// The root directory may not exist before the first pod; its parent's filesystem is the
	// one it will be created on.
	p := filepath.Clean(path)
	for {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			bsize := uint64(st.Bsize)
			return FilesystemStats{
				Capacity:   st.Blocks * bsize,
				Available:  st.Bavail * bsize,
				Inodes:     st.Files,
				InodesFree: st.Ffree,
			}, nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, unix.ENOENT) || parent == p {
			return FilesystemStats{}, fmt.Errorf("statfs %s: %w", p, err)
		}
		p = parent
	}
}

func (m hostMachine) Processes() (ProcessStats, error) {
	// /proc/loadavg's fourth field is "runnable/total" scheduling entities: every thread,
	// counted without sysinfo(2)'s 16-bit wrap. The kubelet reads the same number.
	s, err := m.readTrimmed("/proc/loadavg")
	if err != nil {
		return ProcessStats{}, fmt.Errorf("count processes: %w", err)
	}
	f := strings.Fields(s)
	if len(f) < 4 {
		return ProcessStats{}, fmt.Errorf("count processes: unexpected loadavg %q", s)
	}
	_, total, ok := strings.Cut(f[3], "/")
	running, err := strconv.ParseUint(total, 10, 64)
	if !ok || err != nil {
		return ProcessStats{}, fmt.Errorf("count processes: unexpected loadavg %q", s)
	}
	var limit uint64
	for _, p := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		s, err := m.readTrimmed(p)
		if err != nil {
			return ProcessStats{}, fmt.Errorf("process limit: %w", err)
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return ProcessStats{}, fmt.Errorf("process limit %s: %w", p, err)
		}
		if limit == 0 || v < limit {
			limit = v
		}
	}
	return ProcessStats{Running: running, Max: limit}, nil
}
