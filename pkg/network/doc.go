// Package network owns pod networking through CNI plugins (DESIGN.md decision 5): the node's
// network list, libcni ADD/DEL/CHECK/GC/STATUS, and the delegate that brings containerd's CNI
// calls to the agent.
//
//	containerd RunPodSandbox / StopPodSandbox
//	    -> nodeagent-cni (or nodeagent with CNI_COMMAND set) run as the only plugin: RunDelegate
//	    -> root-only unix socket, one JSON Request / Response per connection
//	    -> agent: Service.handle -> AttachmentFromRequest -> Runner.Add / Del / Check
//	    -> libcni runs the node list (bridge+host-local, portmap, bandwidth), caching results
//	    <- EncodeResult (converted to containerd's cniVersion) <- printed by the delegate
//
// The parts:
//   - config.go: DefaultConflist generates the default list (cniVersion 1.1.0; bridge with
//     gateway, masquerade and hairpin; host-local on the pod CIDR, one range per family;
//     portmap with snat; bandwidth). loopback is left to containerd. LoadNetwork validates a
//     generated or user-supplied list without executing anything and returns one error naming
//     the problem, classified ErrInvalidConfig (fix the file) or ErrPluginNotFound (install
//     the binaries; may heal).
//   - state.go: the state directory every process running the list for this node shares (the
//     saved list, libcni's result cache, a flock). Sharing it is what lets the delegate DEL
//     without the agent, and several agents on one containerd (the test bed) serve each
//     other's pods.
//   - runner.go: Runner wraps libcni behind the invoke.Exec seam (tests use a fake). Calls for
//     one attachment are serialized; ADD and DEL hold the state dir's lock shared and GC holds
//     it exclusively, so a GC in any process never frees an address an ADD is handing out;
//     attachments this process added, and cached results younger than the grace period, are
//     never collected.
//   - exec.go, attachlock.go: an ADD or DEL locks its attachment's file under the state dir
//     and runs the plugins with Pdeathsig and that lock inherited, so when the agent dies
//     mid-call its plugins die too, and the DEL that follows (the delegate's or a restarted
//     agent's) waits until every process of the call (host-local, iptables) has ended
//     instead of racing it. The files are also GC's inventory of ADDs killed before libcni
//     cached a result.
//   - natsweep.go: bridge, portmap and bandwidth implement no CNI GC, and bridge's DEL misses
//     its masquerade rules without the pod's interface; the sweep removes an attachment's nat
//     rules and chains by the plugins' own names and comments. DEL runs it over a half-done
//     ADD, GC for every attachment that is not valid.
//   - delegate.go, request.go: ListenDelegate (0600 socket, created under a temp name and
//     renamed so it is never reachable with wider permissions), ServeDelegate (calls in flight
//     finish when the agent stops: a DEL killed halfway leaks), RunDelegate. The delegate's
//     config names the agent's socket (or a directory of them) and the state dir. VERSION is
//     answered locally; with the agent unreachable ADD and CHECK fail with code 11, STATUS
//     with 50, and DEL runs the saved list itself while the netns still exists, so a stopped
//     agent never leaves an address or an iptables rule behind and sandboxes can still be
//     removed.
//   - service.go: Service is the agent's side: it generates or reads the list (a list that can
//     never work stops the agent; missing plugins only make the network not ready), validates
//     it (VERSION and STATUS of every plugin) until it is ready, serves the delegate, runs GC
//     at start and periodically with every ready sandbox of the runtime as live, and CHECKs
//     this node's running sandboxes periodically, reporting failures to the pod manager (which
//     replaces the sandbox). It never waits on a pod worker: the delegate's call arrives while
//     a worker is inside RunPodSandbox or StopPodSandbox.
package network
