// Package prober runs the liveness, readiness and startup probes of running containers, with
// the kubelet's semantics field by field, and reports their settled results to the pod
// worker. It never acts on a result: the pod worker alone kills a container whose liveness or
// startup probe failed, and computes ready and started from Result.
//
// One goroutine per probe of one container instance (a Target, keyed by container ID and
// kind), with one timer. SyncPod is level-triggered: it starts the goroutines of new targets
// and cancels those no longer listed, so a probe never outlives its container. A restarted
// container has a new ID and so new probes, starting from the initial results again.
//
//	start: wait until StartedAt+initialDelaySeconds (now if that has passed), then a jitter
//	       in [0, periodSeconds) so that probes started together do not run together
//	gated: liveness and readiness of a container with a startup probe wait for it to succeed;
//	       readiness then runs at once, liveness one period later
//	loop:  run the handler within timeoutSeconds, count consecutive equal outcomes,
//	       settle at successThreshold / failureThreshold, OnChange if the settled result changed,
//	       sleep to the next multiple of periodSeconds (runs that overran skip the missed ones)
//	end:   startup Success, liveness or startup Failure (the container is about to be
//	       killed and replaced), or cancelled by SyncPod / RemovePod / Stop
//
// Results start where the kubelet's do: readiness Failure, liveness Success, startup Unknown.
// A run that could not be made at all (the runtime was unreachable for an exec probe) is not
// counted either way, as the kubelet throws away prober errors.
//
// Handlers: exec through the CRI (Execer); httpGet, tcpSocket and grpc from the agent's
// network namespace to the pod IP, each run on a fresh connection that is closed after it
// (no keep-alives, as the kubelet, so nothing idles between runs). httpGet speaks HTTP/1.1
// from the probe's goroutine with net/http's request writer and response parser rather than
// through an http.Transport, whose two goroutines per connection would cost more than the
// probe; it follows redirects as the kubelet's client. grpc uses grpc.health.v1 over
// plaintext. Connections get SO_LINGER 1s, as the kubelet's probe dialer, which sets it so
// that frequent probes do not pile up sockets in TIME_WAIT.
package prober
