// Package server serves the node's debug endpoints over HTTP: /healthz (each check named,
// failing ones say why), /readyz (the first sync of every source is done), /pods (a v1.PodList
// with statuses, as the kubelet's /pods), /metrics (Prometheus), /debug/pods/<uid> (a pod's
// timeline: what its worker did, how long it took, what failed) and /debug/pprof/ (Go's
// profiler). It holds no state of its own: everything it shows comes from the functions it
// is given.
//
// Off loopback it requires a bearer token on every request (Config.Token); on loopback too
// when one is configured.
package server
