package podmanager

import (
	"fmt"
	"strconv"
	"strings"
)

// The kubelet's admission reason for a pod that asks for a sysctl the node does not allow.
const reasonSysctlForbidden = "SysctlForbidden"

// safeSysctls are allowed to every pod, as the kubelet's safe set (v1.36): namespaced and
// isolated between pods. Some are namespaced only from a kernel version on.
var safeSysctls = []struct {
	name      string
	minKernel [2]int
}{
	{name: "kernel.shm_rmid_forced"},
	{name: "net.ipv4.ip_local_port_range"},
	{name: "net.ipv4.tcp_syncookies"},
	{name: "net.ipv4.ping_group_range"},
	{name: "net.ipv4.ip_unprivileged_port_start"},
	{name: "net.ipv4.ip_local_reserved_ports", minKernel: [2]int{3, 16}},
	{name: "net.ipv4.tcp_keepalive_time", minKernel: [2]int{4, 5}},
	{name: "net.ipv4.tcp_fin_timeout", minKernel: [2]int{4, 6}},
	{name: "net.ipv4.tcp_keepalive_intvl", minKernel: [2]int{4, 5}},
	{name: "net.ipv4.tcp_keepalive_probes", minKernel: [2]int{4, 5}},
	{name: "net.ipv4.tcp_rmem", minKernel: [2]int{4, 15}},
	{name: "net.ipv4.tcp_wmem", minKernel: [2]int{4, 15}},
}

// sysctlNamespace is the namespace a sysctl (or a pattern's prefix) lives in: "ipc", "net",
// or "" when it is not namespaced, and so never settable per pod.
func sysctlNamespace(name string) string {
	switch {
	case strings.HasPrefix(name, "net."):
		return "net"
	case strings.HasPrefix(name, "fs.mqueue."), name == "kernel.sem",
		strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"):
		return "ipc"
	}
	return ""
}

// sysctlAllowlist decides which sysctls a pod may set: the safe set plus what the operator
// allows with --allowed-unsafe-sysctls (names, or prefixes ending in "*").
type sysctlAllowlist struct {
	names    map[string]string // name -> namespace
	prefixes map[string]string // prefix -> namespace
}

// newSysctlAllowlist builds the allowlist for a node running kernel release (uname -r); an
// unsafe entry that is not namespaced is an error naming it, as with the kubelet.
func newSysctlAllowlist(unsafe []string, release string) (*sysctlAllowlist, error) {
	a := &sysctlAllowlist{names: map[string]string{}, prefixes: map[string]string{}}
	major, minor := kernelVersion(release)
	for _, s := range safeSysctls {
		if m := s.minKernel; major > m[0] || major == m[0] && minor >= m[1] {
			a.names[s.name] = sysctlNamespace(s.name)
		}
	}
	for _, u := range unsafe {
		u = normalizeSysctl(strings.TrimSpace(u))
		if u == "" {
			continue
		}
		prefix, isPattern := strings.CutSuffix(u, "*")
		ns := sysctlNamespace(prefix)
		if ns == "" {
			return nil, fmt.Errorf("allowed-unsafe-sysctls: the sysctls %q are not known to be namespaced", u)
		}
		if isPattern {
			a.prefixes[prefix] = ns
		} else {
			a.names[u] = ns
		}
	}
	return a, nil
}

// check returns why the pod may not run here ("" when it may), in the kubelet's words.
func (a *sysctlAllowlist) check(hostNetwork, hostIPC bool, names []string) string {
	for _, n := range names {
		n = normalizeSysctl(n)
		ns, ok := a.names[n]
		if !ok {
			for p, pns := range a.prefixes {
				if strings.HasPrefix(n, p) {
					ns, ok = pns, true
					break
				}
			}
		}
		switch {
		case !ok:
			return fmt.Sprintf("forbidden sysctl: %q not allowlisted", n)
		case ns == "net" && hostNetwork, ns == "ipc" && hostIPC:
			return fmt.Sprintf("forbidden sysctl: %q not allowed with host %s enabled", n, ns)
		}
	}
	return ""
}

// normalizeSysctl turns a slash-separated name (net/ipv4/conf/eno2.100/rp_filter) into the
// dotted form (net.ipv4.conf.eno2/100.rp_filter), as the kubelet does.
func normalizeSysctl(s string) string {
	i := strings.IndexAny(s, "./")
	if i < 0 || s[i] == '.' {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, s)
}

// kernelVersion reads major and minor from a release such as "6.1.0-18-amd64"; 0, 0 when it
// cannot, which leaves out the sysctls that need a newer kernel.
func kernelVersion(release string) (int, int) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	return major, minor
}
