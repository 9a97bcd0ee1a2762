package podmanager

import (
	"time"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// maxSeconds caps every seconds field of a pod that becomes a time.Duration (grace periods,
// sleep hooks). The API server accepts any int64 there, but time.Duration holds only ~292
// years: 10000000000 s wraps to a negative duration and math.MaxInt64 s to -1 s, which made a
// huge grace mean "kill at once" and turned the termination context into one already past
// its deadline. It is the CRI client's own bound (100 years, "forever" for a pod), which
// leaves ~190 years of headroom, so the sums made from it (a deadline from Now, the
// terminate context's slack, the call timeout on top of a stop timeout) cannot overflow.
const maxSeconds = cri.MaxWaitSeconds

// seconds turns a pod's seconds field into a duration: negative is 0, absurdly large is
// maxSeconds, never a wrapped-around value.
func seconds(n int64) time.Duration {
	return time.Duration(min(max(n, 0), maxSeconds)) * time.Second
}

// minStopGrace is the kubelet's minimumGracePeriodInSeconds: a container whose grace was
// used up (by preStop, by the containers stopped before it) still gets this long after its
// stop signal before SIGKILL, so a short grace period never means SIGKILL without SIGTERM.
const minStopGrace = 2

// stopTimeout is the timeout handed to CRI StopContainer for the time left until the
// deadline. CRI counts whole seconds, so it rounds up: rounding down cost every container up
// to a second, and turned a 1 s grace into none at all.
func stopTimeout(left time.Duration) int64 {
	s := int64(left / time.Second)
	if left%time.Second > 0 {
		s++
	}
	return min(max(s, minStopGrace), maxSeconds)
}
