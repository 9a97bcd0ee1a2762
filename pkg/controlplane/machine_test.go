package controlplane

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeRoot writes files (path -> content) under a temporary directory, a host for hostMachine.
func fakeRoot(t *testing.T, files map[string]string) hostMachine {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return hostMachine{root: root}
}

func TestHostMachineInfo(t *testing.T) {
	m := fakeRoot(t, map[string]string{
		"/sys/devices/system/cpu/online":   "0-3,8,10-11\n",
		"/etc/machine-id":                  "0123456789abcdef0123456789abcdef\n",
		"/sys/class/dmi/id/product_uuid":   "4c4c4544-0042-3510-8052-b2c04f4e3732\n",
		"/proc/sys/kernel/random/boot_id":  "7d3f2b0e-1111-4222-8333-444455556666\n",
		"/proc/sys/kernel/osrelease":       "6.1.0-28-amd64\n",
		"/etc/os-release":                  "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
		"/proc/meminfo":                    "MemTotal:        8000000 kB\nMemFree:          100000 kB\nMemAvailable:    5000000 kB\n",
		"/proc/loadavg":                    "0.52 0.58 0.59 2/1234 56789\n",
		"/proc/sys/kernel/pid_max":         "4194304\n",
		"/proc/sys/kernel/threads-max":     "62000\n",
		"/var/lib/dbus/machine-id":         "not this one\n",
		"/usr/lib/os-release":              "PRETTY_NAME=\"not this one\"\n",
		"/sys/devices/system/cpu/possible": "0-63\n",
	})
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	want := MachineInfo{CPUs: 7, MachineID: "0123456789abcdef0123456789abcdef",
		SystemUUID: "4c4c4544-0042-3510-8052-b2c04f4e3732", BootID: "7d3f2b0e-1111-4222-8333-444455556666",
		KernelVersion: "6.1.0-28-amd64", OSImage: "Debian GNU/Linux 12 (bookworm)"}
	if info != want {
		t.Errorf("Info = %+v\nwant   %+v", info, want)
	}
	mem, err := m.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if mem != (MemoryStats{Total: 8000000 * 1024, Available: 5000000 * 1024}) {
		t.Errorf("Memory = %+v", mem)
	}
	procs, err := m.Processes()
	if err != nil {
		t.Fatal(err)
	}
	if procs != (ProcessStats{Running: 1234, Max: 62000}) {
		t.Errorf("Processes = %+v, want 1234 of the lower limit 62000", procs)
	}
}

// Missing identity files leave their fields empty with an error naming them; a missing
// product_uuid (no DMI, or not root) is no error; no os-release reads "Linux".
func TestHostMachineInfoPartial(t *testing.T) {
	m := fakeRoot(t, map[string]string{
		"/var/lib/dbus/machine-id":   "dbus-id\n",
		"/proc/sys/kernel/osrelease": "6.1.0\n",
	})
	info, err := m.Info()
	if err == nil || !strings.Contains(err.Error(), "boot ID") || strings.Contains(err.Error(), "machine ID") {
		t.Errorf("Info error = %v, want one naming the boot ID only", err)
	}
	if info.MachineID != "dbus-id" || info.SystemUUID != "" || info.BootID != "" || info.KernelVersion != "6.1.0" ||
		info.OSImage != "Linux" || info.CPUs != runtime.NumCPU() {
		t.Errorf("Info = %+v", info)
	}
}

func TestHostMachineMemoryWithoutMemAvailable(t *testing.T) {
	m := fakeRoot(t, map[string]string{
		"/proc/meminfo": "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n",
	})
	mem, err := m.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if mem.Available != 420*1024 {
		t.Errorf("Available = %d, want MemFree+Buffers+Cached", mem.Available)
	}
	if _, err := fakeRoot(t, map[string]string{"/proc/meminfo": "garbage\n"}).Memory(); err == nil {
		t.Error("Memory of a meminfo without MemTotal succeeded")
	}
}

func TestCountCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 1, true},
		{"0-7", 8, true},
		{"0-3,8,10-11", 7, true},
		{"3-1", 0, false},
		{"x", 0, false},
	} {
		got, err := countCPUList(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("countCPUList(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// The root directory need not exist yet: its nearest existing parent's filesystem counts.
func TestHostMachineFilesystemOfMissingDir(t *testing.T) {
	dir := t.TempDir()
	m := HostMachine()
	have, err := m.Filesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	if have.Capacity == 0 || have.Available > have.Capacity {
		t.Errorf("Filesystem(%s) = %+v", dir, have)
	}
	missing, err := m.Filesystem(filepath.Join(dir, "not", "yet"))
	if err != nil {
		t.Fatal(err)
	}
	if missing.Capacity != have.Capacity {
		t.Errorf("missing dir capacity %d, want its parent's %d", missing.Capacity, have.Capacity)
	}
}

// The real host answers every reading (this is Linux with /proc and /etc).
func TestHostMachineReadsThisHost(t *testing.T) {
	m := HostMachine()
	info, err := m.Info()
	if err != nil {
		t.Logf("Info: %v (partial identity is allowed)", err)
	}
	if info.CPUs < 1 || info.KernelVersion == "" || info.OSImage == "" {
		t.Errorf("Info = %+v", info)
	}
	if mem, err := m.Memory(); err != nil || mem.Total == 0 || mem.Available > mem.Total {
		t.Errorf("Memory = %+v, %v", mem, err)
	}
	if p, err := m.Processes(); err != nil || p.Running == 0 || p.Max < p.Running {
		t.Errorf("Processes = %+v, %v", p, err)
	}
}
