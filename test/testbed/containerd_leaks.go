package testbed

import (
	"regexp"
	"strings"
)

var (
	idRE      = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	connectRE = regexp.MustCompile(`connecting to shim ([0-9a-f]{64})" address="([^"]+)"`)
)

// CancelledTaskCreate explains a runc container or shim id that CRI does not list by a task
// create containerd logged as cancelled ("failed to create ... context canceled"), for id or
// for another task of the same shim (a pod's tasks share its sandbox's shim). It returns that
// log line, or "". Such leftovers are containerd's own bug (containerd#7733, #11392): when
// the client of a task create goes away (kill -9 of the agent), its cleanup races the shim,
// which then serves a container nothing knows and never exits. The agent cannot avoid it on
// a kill, so tests report it apart instead of failing. log is containerd's log from where the
// run began.
func CancelledTaskCreate(log []byte, id string) string {
	lines := strings.Split(string(log), "\n")
	addrOf := map[string]string{}
	for _, l := range lines {
		if m := connectRE.FindStringSubmatch(l); m != nil {
			addrOf[m[1]] = m[2]
		}
	}
	group := map[string]bool{id: true}
	if addr := addrOf[id]; addr != "" {
		for other, a := range addrOf {
			if a == addr {
				group[other] = true
			}
		}
	}
	for _, l := range lines {
		if !strings.Contains(l, "failed to create") || !strings.Contains(l, "context canceled") {
			continue
		}
		for _, m := range idRE.FindAllString(l, -1) {
			if group[m] {
				return l
			}
		}
	}
	return ""
}
