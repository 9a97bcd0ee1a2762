// Package check counts what a chaos run (kill -9 of the agent, containerd restarts, pods
// added, edited and removed) must never leave behind, by looking at the system itself rather
// than at what the agent says: the CRI runtime's sandboxes and containers, host-local's lease
// files, /proc/self/mountinfo, the agent's pod and log directories, the bridge's ports, the
// nat table, runc's state and the shim processes.
//
// Two parts, shared by the chaos program (test/chaos) and its short e2e cycle
// (test/e2e/chaos):
//
//	Observer   samples CRI while the run goes on: a pod UID with two ready sandboxes at
//	           once is a duplicate; a container of a pod UID seen with a second ID or a
//	           non-zero attempt is an unexpected restart (the workload only runs containers
//	           that sleep forever or exit once by themselves), unless the instance it
//	           replaced never ran because the kill cut its StartContainer short (counted
//	           apart, as information: containerd cancels a start whose caller died).
//	Bed.Leaks  one look at a quiet system, judged against the pod UIDs that should exist:
//	           leases, mounts, pod and log directories, veths, netns, nat chains and rules,
//	           runc containers and shims that no live sandbox or container accounts for.
//
// Both write into a Report, whose counts are all expected to be zero.
package check
