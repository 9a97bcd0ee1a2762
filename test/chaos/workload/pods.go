package workload

import (
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/testbed"
)

// GenerationAnnotation carries the number of the write that produced a manifest, so the
// workload can tell the agent's current pod from the one an edit replaces.
const GenerationAnnotation = "chaos.nodeagent.io/generation"

// podKind is one of the workload's pods: its manifest and what "converged" means for it.
type podKind struct {
	name string
	// spec is the manifest's spec block, indented two spaces, given the image and hostPort.
	spec func(image string, hostPort int) string
	// done is the state the agent must reach (and keep) for the pod.
	done func(*v1.Pod) bool
	// lost says, for a pod that is done, whether it got there because containerd lost an
	// exit code (nil: it cannot).
	lost func(*v1.Pod) string
	// oneReadySandbox: while converged the pod has exactly one ready sandbox (false for a
	// pod whose containers have all exited, whose sandbox the agent may stop).
	oneReadySandbox bool
}

// sleepForever is PID 1 of every long-running container: it ignores SIGTERM, so the pods'
// 1 s grace period is what stopping them costs.
const sleepForever = `["sleep", "1000000"]`

var kinds = []podKind{
	{name: "plain-a", spec: plainSpec, done: testbed.PodRunningReady, oneReadySandbox: true},
	{name: "plain-b", spec: plainSpec, done: testbed.PodRunningReady, oneReadySandbox: true},
	{name: "hostport", done: testbed.PodRunningReady, oneReadySandbox: true, spec: func(image string, hostPort int) string {
		return fmt.Sprintf(`  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: %s
    ports:
    - {containerPort: 8080, hostPort: %d, protocol: TCP}
`, image, sleepForever, hostPort)
	}},
	{name: "subpath", done: testbed.PodRunningReady, oneReadySandbox: true, spec: func(image string, _ int) string {
		return fmt.Sprintf(`  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo here > /data/f && echo here > /mem/f && exec sleep 1000000"]
    volumeMounts:
    - {name: disk, mountPath: /data, subPath: sub/dir}
    - {name: mem, mountPath: /mem, subPath: m}
    - {name: disk, mountPath: /disk}
  volumes:
  - {name: disk, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
`, image)
	}},
	{name: "never", done: finished, lost: exitLost, oneReadySandbox: false, spec: func(image string, _ int) string {
		return fmt.Sprintf(`  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: once
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 1"]
`, image)
	}},
	{name: "init", done: testbed.PodRunningReady, oneReadySandbox: true, spec: func(image string, _ int) string {
		// main exits (and so restarts) if it ever runs without init having run first.
		return fmt.Sprintf(`  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo ok > /work/ready"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "test -f /work/ready && exec sleep 1000000"]
    volumeMounts: [{name: work, mountPath: /work}]
  volumes:
  - {name: work, emptyDir: {}}
`, image)
	}},
}

func plainSpec(image string, _ int) string {
	return fmt.Sprintf(`  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: %s
`, image, sleepForever)
}

// unknownExit is the exit code containerd reports for a container whose exit it did not see:
// one that exited while containerd was down, when the restarted containerd found its shim gone.
const unknownExit = 255

// finished: the pod's one container ran to its end, Succeeded, or Failed only because
// containerd lost its exit code (see exitLost).
func finished(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodSucceeded || (p.Status.Phase == v1.PodFailed && exitLost(p) != "")
}

// exitLost describes a Failed pod whose container's exit code is containerd's unknown one.
func exitLost(p *v1.Pod) string {
	if p.Status.Phase != v1.PodFailed {
		return ""
	}
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.ExitCode == unknownExit {
			return fmt.Sprintf("pod %s (UID %s) container %s: Failed, exit %d %s %q (it exits 0 after 1 s; containerd restarted meanwhile)",
				p.Name, p.UID, cs.Name, t.ExitCode, t.Reason, t.Message)
		}
	}
	return ""
}

// manifest is kind k's pod at generation gen.
func (k podKind) manifest(gen int, image string, hostPort int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {app: chaos}
  annotations: {%s: "%d"}
spec:
%s`, k.name, GenerationAnnotation, gen, k.spec(image, hostPort))
}
