// Package framework runs end-to-end tests against the real thing: it brings up a private
// test bed (containerd, runc, CNI plugins, local registries) with hack/testbed.sh, starts the
// real nodeagent binary, and offers what a user would look at: the debug endpoint's /pods,
// the agent's log, and the CRI runtime's own view (what crictl would print).
//
// Each e2e package calls Main from its TestMain with its own test bed index, so packages
// run in parallel without sharing a containerd. Tests inside a package may run in parallel
// too: every agent has its own node name, and an agent only ever touches sandboxes labelled
// with its node name.
package framework
