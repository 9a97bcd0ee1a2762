package restart

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

// eventModes are the two paths exits can take to the agent; the relist period is long, so a
// quick reaction can only come from the events.
var eventModes = []string{"cri", "containerd"}

func agentWith(t *testing.T, events string) *framework.Agent {
	return framework.StartAgent(t, framework.AgentOptions{ExtraArgs: []string{
		"--runtime-events", events, "--relist-period", "5m",
		"--restart-backoff-initial", "1s", "--restart-backoff-max", "8s",
	}})
}

func pod(name, policy, command string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", %q]
`, name, policy, framework.TB.BusyboxImage, command)
}

// instance is one run of a container as the runtime recorded it.
type instance struct {
	id       string
	restarts int
	created  time.Time // when the agent's CreateContainer made it: the agent's decision
	started  time.Time // when the runtime started it, which a loaded machine can delay
	finished time.Time
}

// recorder polls the runtime for every instance of one container, keeping each one's start
// and exit even after the agent garbage-collects it, and the pod's status for the back-off
// the agent announces while the container waits.
type recorder struct {
	mu      sync.Mutex
	seen    map[string]*instance
	backoff map[int32]string // restart count -> the "back-off 2s" wait shown in CrashLoopBackOff
	stop    func()
}

var backoffMessage = regexp.MustCompile(`^back-off (\S+) restarting failed container`)

func record(t *testing.T, a *framework.Agent, podName, container string) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{seen: map[string]*instance{}, backoff: map[int32]string{}}
	done := make(chan struct{})
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, c := range a.Containers(map[string]string{cri.LabelPodName: a.PodName(podName), cri.LabelContainerName: container}) {
				st, err := framework.TB.CRI.ContainerStatus(ctx, c.Id, false)
				if err != nil {
					continue
				}
				s := st.Status
				n, _ := strconv.Atoi(c.Annotations[cri.AnnotationRestartCount])
				r.mu.Lock()
				in := r.seen[c.Id]
				if in == nil {
					in = &instance{id: c.Id, restarts: n}
					r.seen[c.Id] = in
				}
				if s.CreatedAt != 0 {
					in.created = time.Unix(0, s.CreatedAt)
				}
				if s.StartedAt != 0 {
					in.started = time.Unix(0, s.StartedAt)
				}
				if s.State == runtimeapi.ContainerState_CONTAINER_EXITED && s.FinishedAt != 0 {
					in.finished = time.Unix(0, s.FinishedAt)
				}
				r.mu.Unlock()
			}
			if p := a.FindPod(podName); p != nil {
				if cs := containerStatus(p, container); cs != nil && cs.State.Waiting != nil {
					if m := backoffMessage.FindStringSubmatch(cs.State.Waiting.Message); m != nil {
						r.mu.Lock()
						r.backoff[cs.RestartCount] = m[1]
						r.mu.Unlock()
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return r
}

// backoffs returns the back-off the agent announced at each restart count it was seen waiting.
func (r *recorder) backoffs() map[int32]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.backoff)
}

// instances returns what was seen, oldest first.
func (r *recorder) instances() []instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []instance
	for _, in := range r.seen {
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].restarts < out[j].restarts })
	return out
}

func containerStatus(p *v1.Pod, name string) *v1.ContainerStatus {
	for _, list := range [][]v1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}
