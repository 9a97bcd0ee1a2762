// Package workload is what a chaos run does to an agent: a handful of pod manifests written,
// edited and removed at random (a seeded math/rand, so a run can be replayed), kill -9 of
// the agent at a random moment while it acts on them, sometimes a containerd restart, then a
// bounded wait until the agent has converged on what the manifests say.
//
//	Cycle:  plan edits -> write/remove manifests -> [restart containerd at a random moment]
//	        -> kill -9 at a random moment -> [more edits while the agent is down]
//	        -> start the agent -> wait for convergence (bounded) -> the desired pod UIDs
//
// Every container it runs either sleeps forever or exits once by itself (an init container,
// a restartPolicy Never container), which is what lets package check count any restart as
// unexpected. The pods: two plain ones, one with a hostPort, one with emptyDir volumes (disk
// and memory) mounted through subPaths, one restartPolicy Never pod, one with an init
// container. An edit bumps an annotation, which gives the pod a new UID (the file source
// hashes the content): the agent replaces it.
package workload
