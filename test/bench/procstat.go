package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, 100 on every Linux
// architecture Go supports (it is part of the kernel's ABI, whatever CONFIG_HZ is).
const userHZ = 100

// procSample is one reading of a process's memory and CPU counters.
type procSample struct {
	at       time.Time
	rss, hwm uint64        // VmRSS and VmHWM (peak RSS), bytes
	anon     uint64        // RssAnon: the private part of RSS (the rest is the binary's pages)
	threads  uint64        // OS threads; the Go runtime never ends one, each keeps ~40 KiB of stacks
	cpu      time.Duration // utime + stime
}

func readProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "VmRSS":
			dst = &s.rss
		case "VmHWM":
			dst = &s.hwm
		case "RssAnon":
			dst = &s.anon
		case "Threads":
			n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
			if err != nil {
				return s, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
			}
			s.threads = n
			continue
		default:
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		*dst = kb << 10
	}

	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count fields after
	// the last ')'. There, utime and stime (fields 14 and 15) are at 11 and 12.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	s.cpu = time.Duration(ticks) * time.Second / userHZ
	return s, nil
}

// cpuPercent is the CPU used between two readings as a percentage of one core.
func cpuPercent(before, after procSample) float64 {
	wall := after.at.Sub(before.at)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(after.cpu-before.cpu) / float64(wall)
}
