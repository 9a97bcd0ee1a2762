package podmanager

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// The timeline answers "why is my pod slow, or not running" for one pod: when each step of
// starting it last ran, how long it took, how it ended, the last error of each step, the
// current backoffs and the pod's recent events. The worker records it as it goes; the debug
// server shows it as /debug/pods/<uid>.
//
// Recording is cheap on purpose: a step is one entry per (step, container), updated in place,
// so a worker holds at most 2 + 5 x containers entries whatever its age, and a steady-state
// sync that does nothing records nothing but its own start and duration.

// Step names, in the order a pod starts.
const (
	StepVolumes   = "volumes"   // volume SetUp
	StepSandbox   = "sandbox"   // RunPodSandbox (containerd calls the CNI delegate inside it)
	StepNetwork   = "network"   // the CNI ADD the delegate forwarded, inside RunPodSandbox
	StepImage     = "image"     // image status and pull
	StepCreate    = "create"    // CreateContainer
	StepStart     = "start"     // StartContainer
	StepPostStart = "postStart" // the postStart hook
)

// maxPodEvents is how many recent events each pod keeps for `nodeagent describe`.
const maxPodEvents = 25

// Duration marshals as a Go duration string ("1.25s") so the JSON reads well.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// PodDebug is one pod's timeline, as served on /debug/pods/<uid>.
type PodDebug struct {
	UID       types.UID `json:"uid"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	// LastSync is the worker's latest pass.
	LastSync SyncInfo `json:"lastSync"`
	// Steps are the latest run of each step, oldest first.
	Steps []Step `json:"steps"`
	// SandboxError is why the pod has no sandbox right now, when it has none ("network is
	// not ready: ...", the last RunPodSandbox error).
	SandboxError string `json:"sandboxError,omitempty"`
	// Backoffs are the waits in force: per container ("container/<name>"), per image
	// ("image/<ref>"), for the sandbox and the volumes.
	Backoffs []BackoffInfo `json:"backoffs,omitempty"`
	// Events are the pod's recent events, oldest first.
	Events []Event `json:"events,omitempty"`
}

// SyncInfo describes one pass of the pod's worker.
type SyncInfo struct {
	Start     time.Time `json:"start"`
	Duration  Duration  `json:"duration"`
	Operation string    `json:"operation"` // create, sync or kill
}

// Step is the latest run of one step, for one container or ("") the pod.
type Step struct {
	Step      string    `json:"step"`
	Container string    `json:"container,omitempty"`
	Start     time.Time `json:"start"`
	Duration  Duration  `json:"duration"`
	// Detail says what the step did, where that varies ("pulled", "present").
	Detail string `json:"detail,omitempty"`
	// Error is how this run failed; empty when it worked.
	Error string `json:"error,omitempty"`
	// LastError and LastErrorTime keep the step's latest failure after it has worked again.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
	// Failures counts failed runs of the step since the worker started.
	Failures int `json:"failures,omitempty"`
}

// BackoffInfo is one wait in force.
type BackoffInfo struct {
	Key  string   `json:"key"`
	Wait Duration `json:"wait"` // the current backoff
	// RetryAt is when the next attempt may run; zero when nothing waits (a container that
	// runs: Wait is then what its next crash will get).
	RetryAt time.Time `json:"retryAt,omitzero"`
}

// Event is one event the worker raised, repeats folded as kubectl shows them.
type Event struct {
	Type      string    `json:"type"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	FirstTime time.Time `json:"firstTime"`
	LastTime  time.Time `json:"lastTime"`
	Count     int       `json:"count"`
}

// timeline is the worker's record. The worker goroutine writes it; the debug server reads it
// through Manager.PodDebug, and the network service adds network steps from its own
// goroutine, so everything is behind mu, which is never held across a call out.
type timeline struct {
	mu           sync.Mutex
	name, ns     string        // guarded by mu
	lastSync     SyncInfo      // guarded by mu
	steps        []Step        // guarded by mu: one per (step, container)
	sandboxError string        // guarded by mu
	backoffs     []BackoffInfo // guarded by mu: rebuilt in place after each sync
	events       []Event       // guarded by mu: a ring of maxPodEvents, next at eventNext
	eventNext    int           // guarded by mu
}

// record updates the entry of (step, container) with one run that began at start and ended
// at end.
func (t *timeline) record(step, container, detail string, start, end time.Time, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.IndexFunc(t.steps, func(s Step) bool { return s.Step == step && s.Container == container })
	if i < 0 {
		t.steps = append(t.steps, Step{Step: step, Container: container})
		i = len(t.steps) - 1
	}
	s := &t.steps[i]
	s.Start, s.Duration, s.Detail, s.Error = start, Duration(end.Sub(start)), detail, ""
	if err != nil {
		s.Error = err.Error()
		s.LastError, s.LastErrorTime = s.Error, end
		s.Failures++
	}
}

// addEvent keeps ev in the ring, folding it into the newest entry when it repeats that one.
func (t *timeline) addEvent(eventType, reason, message string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.events); n > 0 {
		newest := n - 1
		if n == maxPodEvents {
			newest = (t.eventNext + n - 1) % n
		}
		last := &t.events[newest]
		if last.Type == eventType && last.Reason == reason && last.Message == message {
			last.LastTime = now
			last.Count++
			return
		}
	}
	ev := Event{Type: eventType, Reason: reason, Message: message, FirstTime: now, LastTime: now, Count: 1}
	if len(t.events) < maxPodEvents {
		t.events = append(t.events, ev)
		return
	}
	t.events[t.eventNext] = ev
	t.eventNext = (t.eventNext + 1) % maxPodEvents
}

// snapshot copies the record out for the debug server.
func (t *timeline) snapshot(uid types.UID) PodDebug {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := PodDebug{
		UID: uid, Namespace: t.ns, Name: t.name,
		LastSync:     t.lastSync,
		Steps:        slices.Clone(t.steps),
		SandboxError: t.sandboxError,
		Backoffs:     slices.Clone(t.backoffs),
	}
	if len(t.events) < maxPodEvents {
		d.Events = slices.Clone(t.events)
	} else {
		d.Events = append(slices.Clone(t.events[t.eventNext:]), t.events[:t.eventNext]...)
	}
	if d.Steps == nil {
		d.Steps = []Step{}
	}
	slices.SortStableFunc(d.Steps, func(a, b Step) int { return a.Start.Compare(b.Start) })
	slices.SortFunc(d.Backoffs, func(a, b BackoffInfo) int { return strings.Compare(a.Key, b.Key) })
	return d
}

// PodDebug returns the timeline of the pod with uid, if the agent has a worker for it.
func (m *Manager) PodDebug(uid types.UID) (PodDebug, bool) {
	m.mu.Lock()
	w := m.workers[uid]
	m.mu.Unlock()
	if w == nil {
		return PodDebug{}, false
	}
	return w.tl.snapshot(uid), true
}

// NetworkCall records a CNI call the delegate forwarded for a pod (ADD, inside the worker's
// RunPodSandbox) as the pod's network step. It only takes short locks that no worker holds
// across a runtime call (DESIGN.md decision 5), so it is safe to call from the network
// service's handler.
func (m *Manager) NetworkCall(podUID types.UID, command string, start time.Time, took time.Duration, err error) {
	if command != "ADD" || podUID == "" {
		return
	}
	m.mu.Lock()
	w := m.workers[podUID]
	m.mu.Unlock()
	if w != nil {
		w.tl.record(StepNetwork, "", "", start, start.Add(took), err)
	}
}

// stepStart is when a step begins, on the manager's clock.
func (w *worker) stepStart() time.Time { return w.m.cfg.Clock.Now() }

// step records one run of step that began at start and ends now.
func (w *worker) step(step, container, detail string, start time.Time, err error) {
	w.tl.record(step, container, detail, start, w.m.cfg.Clock.Now(), err)
}

// finishSync records the pass and the waits in force after it. It reuses the backoff slice,
// so a sync allocates nothing here once the pod's keys are known.
func (w *worker) finishSync(pod string, ns string, op string, start time.Time) {
	now := w.m.cfg.Clock.Now()
	w.tl.mu.Lock()
	defer w.tl.mu.Unlock()
	w.tl.name, w.tl.ns = pod, ns
	w.tl.lastSync = SyncInfo{Start: start, Duration: Duration(now.Sub(start)), Operation: op}
	w.tl.sandboxError = w.sandboxErr
	w.tl.backoffs = w.tl.backoffs[:0]
	w.backoff.Each(func(key string, wait time.Duration, retryAt time.Time) {
		// A container's entry outlives its wait: after a restart it holds the wait the next
		// crash will get. It is in force only while the container waits; a crash-looping
		// one's wait counts from its exit, which the worker noted.
		if name, ok := strings.CutPrefix(key, "container/"); ok {
			switch at, crashed := w.crashRetryAt[name]; {
			case crashed:
				retryAt = at
			case w.waiting[name] == nil:
				retryAt = time.Time{}
			}
		}
		w.tl.backoffs = append(w.tl.backoffs, BackoffInfo{Key: key, Wait: Duration(wait), RetryAt: retryAt})
	})
}
