package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point  string
	fstype string
}

func mounts() ([]mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mount
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		// id parent major:minor root point options [optional...] - fstype source superoptions
		if len(f) < 7 {
			continue
		}
		m := mount{point: unescapeOctal(f[4])}
		for i := 6; i+1 < len(f); i++ {
			if f[i] == "-" {
				m.fstype = f[i+1]
				break
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// unescapeOctal undoes mountinfo's escaping of space, tab, newline and backslash (\040).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// mounts: anything mounted under the agent's root dir outside a desired pod's directory
// (volumes, tmpfs, staged subPaths), and any network namespace mounted under the test bed
// (containerd keeps them under its state dir) that no live sandbox uses.
func (b *Bed) mounts(desired map[string]bool, l *live, r *Report) error {
	ms, err := mounts()
	if err != nil {
		return fmt.Errorf("mountinfo: %w", err)
	}
	pods := filepath.Join(b.RootDir, "pods")
	for _, m := range ms {
		if under(m.point, b.RootDir) {
			rel, _ := filepath.Rel(pods, m.point)
			uid, _, _ := strings.Cut(rel, "/")
			if !under(m.point, pods) || !desired[uid] {
				r.Add(Mounts, "%s (%s)", m.point, m.fstype)
			}
		}
		if m.fstype == "nsfs" && under(m.point, b.Dir) && !l.netns[m.point] {
			r.Add(NetNS, "%s", m.point)
		}
	}
	return nil
}

// veths: the bridge's ports that are not the host side of a live sandbox's veth, which
// libcni's cached ADD result names.
func (b *Bed) veths(l *live, r *Report) error {
	ports, err := os.ReadDir(filepath.Join("/sys/class/net", b.Bridge, "brif"))
	if errors.Is(err, os.ErrNotExist) {
		return nil // no bridge: no pod ever ran, or the test bed was torn down
	}
	if err != nil {
		return fmt.Errorf("bridge ports: %w", err)
	}
	liveVeths := map[string]bool{}
	for id := range l.ready {
		data, err := os.ReadFile(filepath.Join(b.resultCacheDir(), b.NetworkName+"-"+id+"-eth0"))
		if err != nil {
			continue // not on this network (or hostNetwork): it has no veth of ours
		}
		var cached struct {
			Result struct {
				Interfaces []struct {
					Name    string `json:"name"`
					Sandbox string `json:"sandbox"`
				} `json:"interfaces"`
			} `json:"result"`
		}
		if json.Unmarshal(data, &cached) == nil {
			for _, i := range cached.Result.Interfaces {
				if i.Sandbox == "" {
					liveVeths[i.Name] = true
				}
			}
		}
	}
	for _, p := range ports {
		if !liveVeths[p.Name()] {
			r.Add(Veths, "%s on %s", p.Name(), b.Bridge)
		}
	}
	return nil
}

// runcContainers lists the containers runc knows under every runc root of the test bed (one
// per containerd namespace): ID -> root.
func (b *Bed) runcContainers(ctx context.Context) (map[string]string, error) {
	roots, err := os.ReadDir(b.runcRoot())
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runc roots: %w", err)
	}
	out := map[string]string{}
	for _, e := range roots {
		if !e.IsDir() {
			continue
		}
		root := filepath.Join(b.runcRoot(), e.Name())
		cmd := exec.CommandContext(ctx, "runc", "--root", root, "list", "--format", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		data, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("runc --root %s list: %w: %s", root, err, stderr.String())
		}
		var list []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(data, &list); err != nil { // "null" when empty
			return nil, fmt.Errorf("runc --root %s list: %w", root, err)
		}
		for _, c := range list {
			out[c.ID] = root + " " + c.Status
		}
	}
	return out, nil
}

// shimProcesses finds the shims this test bed's containerd started (-address is its socket):
// PID -> the -id they serve (a sandbox, or a container outside any sandbox).
func (b *Bed) shimProcesses() (map[int]string, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue // exited, or a kernel thread
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		var id, address string
		for i := 1; i+1 < len(args); i++ {
			switch args[i] {
			case "-id", "--id":
				id = args[i+1]
			case "-address", "--address":
				address = args[i+1]
			}
		}
		if address == b.ContainerdSocket && id != "" {
			out[pid] = id
		}
	}
	return out, nil
}
