package check

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// Observer samples the agent's sandboxes and containers in CRI for the two things that must
// never happen whatever kills what: two ready sandboxes for one pod UID, and a container
// started a second time in a pod UID although it never exited unexpectedly.
//
// It assumes the contract of the chaos workload: every container either runs forever or
// exits once by itself (an init container, a restartPolicy Never container), so each pod UID
// and container name has exactly one container ID with attempt 0 for the pod's whole life.
// A pod edit gives a new UID (the file source hashes the content), so it starts afresh.
type Observer struct {
	bed *Bed

	mu        sync.Mutex
	instances map[instanceKey]*instances // guarded by mu
	dups      map[string]string          // pod UID -> what the first sighting showed; guarded by mu
	sandboxes map[string]bool            // every sandbox ID seen; guarded by mu
	samples   int                        // guarded by mu
	failed    int                        // samples the runtime did not answer; guarded by mu
}

type instanceKey struct{ uid, pod, container string }

type instances struct {
	ids        []string          // sorted by created when reported
	created    map[string]int64  // ID -> CreatedAt
	ended      map[string]string // ID -> how it ended, for the exited ones
	neverRan   map[string]bool   // IDs that exited with StartError without ever starting
	maxAttempt uint32
}

// NewObserver returns an observer of the bed's agent.
func NewObserver(bed *Bed) *Observer {
	return &Observer{
		bed:       bed,
		instances: map[instanceKey]*instances{},
		dups:      map[string]string{},
		sandboxes: map[string]bool{},
	}
}

// Run samples every interval until ctx ends. A sample the runtime cannot answer (containerd
// restarting) is skipped and counted.
func (o *Observer) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = o.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one look at the runtime.
func (o *Observer) Sample(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sel := map[string]string{cri.LabelNodeName: o.bed.Node}
	sbs, err := o.bed.CRI.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	var cs []*runtimeapi.Container
	if err == nil {
		cs, err = o.bed.CRI.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: sel})
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.failed++
		return err
	}
	o.samples++

	ready := map[string][]string{}
	for _, sb := range sbs {
		o.sandboxes[sb.Id] = true
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			uid := sb.GetMetadata().GetUid()
			ready[uid] = append(ready[uid], fmt.Sprintf("%s (attempt %d)", short(sb.Id), sb.GetMetadata().GetAttempt()))
		}
	}
	for uid, ids := range ready {
		if len(ids) > 1 && o.dups[uid] == "" {
			sort.Strings(ids)
			o.dups[uid] = fmt.Sprintf("pod UID %s: %d ready sandboxes at %s: %s", uid, len(ids),
				time.Now().Format("15:04:05.000"), strings.Join(ids, ", "))
		}
	}
	for _, c := range cs {
		k := instanceKey{uid: c.Labels[cri.LabelPodUID], pod: c.Labels[cri.LabelPodName], container: c.GetMetadata().GetName()}
		in := o.instances[k]
		if in == nil {
			in = &instances{created: map[string]int64{}, ended: map[string]string{}, neverRan: map[string]bool{}}
			o.instances[k] = in
		}
		if c.State == runtimeapi.ContainerState_CONTAINER_EXITED && in.ended[c.Id] == "" {
			// Once per exited container: whether it ever ran tells a restart from a start
			// the kill cut short.
			in.ended[c.Id], in.neverRan[c.Id] = o.howEnded(ctx, c.Id)
		}
		if _, seen := in.created[c.Id]; !seen {
			in.ids = append(in.ids, c.Id)
			in.created[c.Id] = c.CreatedAt
		}
		attempt := c.GetMetadata().GetAttempt()
		// The agent's own count, as `kubectl get pod` would show it.
		if n, err := strconv.ParseUint(c.Annotations[cri.AnnotationRestartCount], 10, 32); err == nil && uint32(n) > attempt {
			attempt = uint32(n)
		}
		if attempt > in.maxAttempt {
			in.maxAttempt = attempt
		}
	}
	return nil
}

// howEnded describes how an exited container ended, and whether it is a start the caller's
// death cut short (StartError without a start time).
func (o *Observer) howEnded(ctx context.Context, id string) (string, bool) {
	st, err := o.bed.CRI.ContainerStatus(ctx, id, false)
	if err != nil {
		return fmt.Sprintf("status unknown: %v", err), false
	}
	s := st.GetStatus()
	if s.GetStartedAt() == 0 {
		return fmt.Sprintf("never started: %s %q", s.GetReason(), s.GetMessage()), s.GetReason() == "StartError"
	}
	how := fmt.Sprintf("ran %s, exit %d", time.Duration(s.GetFinishedAt()-s.GetStartedAt()).Round(time.Millisecond), s.GetExitCode())
	if s.GetReason() != "" {
		how += " " + s.GetReason()
	}
	return how, false
}

// SandboxIDs is every sandbox ID any sample saw.
func (o *Observer) SandboxIDs() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.sandboxes))
	for id := range o.sandboxes {
		out = append(out, id)
	}
	return out
}

// Samples is how many samples succeeded and how many the runtime did not answer.
func (o *Observer) Samples() (ok, failed int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.samples, o.failed
}

// Report adds the duplicates and restarts seen so far to r: one item per pod UID with
// duplicates, and one per replaced container instance (a container seen with n IDs was
// replaced n-1 times; a higher attempt number counts the instances no sample saw). A
// replaced instance that never ran because the kill cut its start short is StartsCutOff,
// any other is UnexpectedRestarts.
func (o *Observer) Report(r *Report) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, d := range o.dups {
		r.Add(DuplicateSandboxes, "%s", d)
	}
	for k, in := range o.instances {
		var unexpected, cutOff int
		var story []string
		sort.Slice(in.ids, func(i, j int) bool { return in.created[in.ids[i]] < in.created[in.ids[j]] })
		for i, id := range in.ids {
			how := in.ended[id]
			if how == "" {
				how = "not seen exited"
			}
			story = append(story, fmt.Sprintf("%s (%s)", short(id), how))
			if i == len(in.ids)-1 {
				break // the current instance replaced nothing
			}
			if in.neverRan[id] {
				cutOff++
			} else {
				unexpected++
			}
		}
		if unseen := int(in.maxAttempt) - (len(in.ids) - 1); unseen > 0 {
			unexpected += unseen
			story = append(story, fmt.Sprintf("%d instances no sample saw", unseen))
		}
		detail := fmt.Sprintf("pod %s (UID %s) container %s: highest attempt %d; instances: %s",
			k.pod, k.uid, k.container, in.maxAttempt, strings.Join(story, ", "))
		r.AddN(UnexpectedRestarts, unexpected, "%s", detail)
		r.AddN(StartsCutOff, cutOff, "%s", detail)
	}
}

// short is the 13-character prefix crictl prints for an ID.
func short(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}
