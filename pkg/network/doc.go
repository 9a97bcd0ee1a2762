// Package network will own pod networking through CNI plugins: the node's network list,
// libcni ADD/DEL/CHECK/GC, and the delegate server that containerd's CNI calls reach.
//
// Not built yet. Until it is, containerd's CRI plugin runs a plain conflist itself (the test
// bed writes bridge + host-local + portmap), and the agent only reads the pod IP that CRI
// reports.
package network
