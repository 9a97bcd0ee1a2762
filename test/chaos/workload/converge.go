package workload

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/chaos/check"
)

// WaitConverged polls until the agent runs exactly what the manifests say, or the converge
// timeout passes. Converged means: /pods lists one pod per manifest, at the generation last
// written and in its kind's final state (running and ready, or finished: Succeeded, or Failed
// with the exit code containerd reports when it lost the real one), and nothing else;
// CRI holds sandboxes of those pods only, with exactly one ready sandbox for each pod that
// still runs containers.
func (w *Workload) WaitConverged(ctx context.Context, node Node, bed *check.Bed) Result {
	start := time.Now()
	deadline := start.Add(w.cfg.ConvergeTimeout)
	for {
		desired, notes, why := w.converged(ctx, node, bed)
		if why == "" {
			return Result{Converged: true, Desired: desired, Lost: notes, Took: time.Since(start)}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return Result{Detail: why, Took: time.Since(start)}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// converged returns the desired pod UIDs and the exits containerd lost, or why the agent is
// not there yet.
func (w *Workload) converged(ctx context.Context, node Node, bed *check.Bed) (map[string]bool, []string, string) {
	pods, err := node.Pods()
	if err != nil {
		return nil, nil, fmt.Sprintf("/pods: %v", err)
	}
	var lost []string
	byName := map[string]*v1.Pod{}
	for i := range pods {
		byName[pods[i].Name] = &pods[i]
	}
	desired := map[string]bool{}
	needsReady := map[string]string{} // UID -> pod name
	var problems []string
	for _, k := range kinds {
		gen, there := w.present[k.name]
		name := k.name + "-" + w.cfg.NodeName
		p := byName[name]
		delete(byName, name)
		switch {
		case !there && p != nil:
			problems = append(problems, fmt.Sprintf("%s is still listed (phase %s)", name, p.Status.Phase))
		case !there:
		case p == nil:
			problems = append(problems, name+" is not listed")
		case p.Annotations[GenerationAnnotation] != fmt.Sprint(gen):
			problems = append(problems, fmt.Sprintf("%s is at generation %s, want %d", name, p.Annotations[GenerationAnnotation], gen))
		case !k.done(p):
			problems = append(problems, fmt.Sprintf("%s is %s", name, podState(p)))
		default:
			desired[string(p.UID)] = true
			if k.lost != nil {
				if note := k.lost(p); note != "" {
					lost = append(lost, note)
				}
			}
			if k.oneReadySandbox {
				needsReady[string(p.UID)] = name
			}
		}
	}
	for name := range byName {
		problems = append(problems, name+" is listed but has no manifest")
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, nil, "agent: " + strings.Join(problems, "; ")
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sbs, err := bed.CRI.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{cri.LabelNodeName: bed.Node}})
	if err != nil {
		return nil, nil, fmt.Sprintf("CRI: list sandboxes: %v", err)
	}
	ready := map[string]int{}
	for _, sb := range sbs {
		uid := sb.GetMetadata().GetUid()
		if !desired[uid] {
			problems = append(problems, fmt.Sprintf("sandbox %.13s of %s (UID %s) is still there, %s", sb.Id, sb.GetMetadata().GetName(), uid, sb.State))
		}
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready[uid]++
		}
	}
	for uid, name := range needsReady {
		if ready[uid] != 1 {
			problems = append(problems, fmt.Sprintf("%s has %d ready sandboxes", name, ready[uid]))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, nil, "CRI: " + strings.Join(problems, "; ")
	}
	return desired, lost, ""
}

// podState is a pod's phase and its containers' states, for a message.
func podState(p *v1.Pod) string {
	parts := []string{string(p.Status.Phase)}
	for _, cs := range append(append([]v1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		s := "waiting"
		switch {
		case cs.State.Running != nil:
			s = "running"
		case cs.State.Terminated != nil:
			s = fmt.Sprintf("exited %d", cs.State.Terminated.ExitCode)
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			s = cs.State.Waiting.Reason
		}
		parts = append(parts, fmt.Sprintf("%s %s ready=%v restarts=%d", cs.Name, s, cs.Ready, cs.RestartCount))
	}
	return strings.Join(parts, ", ")
}
