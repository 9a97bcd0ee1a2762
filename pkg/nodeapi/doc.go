// Package nodeapi is the node's API server, the kubelet's :10250: what the Kubernetes API
// server dials for `kubectl logs`, `kubectl exec`, `kubectl attach` and
// `kubectl port-forward`, and what monitoring reads /pods and /healthz from. It exists only
// when the agent is a node of a control plane.
//
// Every request goes through the same steps, in order, as in the kubelet's webhook mode:
//
//	TLS (served certificate from files, or self-signed under <root-dir>/pki and reused)
//	 -> authenticate: client certificate against --client-ca-file (CN = user, O = groups),
//	    else bearer token through TokenReview; neither -> 401
//	 -> path sanity: "." or ".." segments and encoded slashes -> 400
//	 -> authorize: SubjectAccessReview on nodes/<node name>, subresource from the path
//	    (/stats, /metrics, /logs, ... ; everything else, /containerLogs and /exec included, is
//	    "proxy"), verb from the method; denied -> 403 naming user, verb and subresource
//	 -> handler: /healthz, /pods, /containerLogs, /exec, /attach, /portForward
//
// Authentication answers are cached for two minutes and authorization answers for five
// minutes (allowed) or thirty seconds (denied), the kubelet's defaults, so a busy
// `kubectl logs -f` does not cost the API server a review per request. Errors reaching the
// API server are never cached.
//
// Logs are read straight from the CRI log files the runtime writes (each line
// "<RFC3339Nano> stdout|stderr F|P <text>"; P marks a partial line the next entries
// complete), found through the container's CRI status, or in the kubelet's layout
// <pod-logs-dir>/<ns>_<name>_<uid>/<container>/<restart>.log once the runtime has forgotten
// the container. Exec, attach and port-forward ask the runtime for a streaming URL and proxy
// the upgraded connection to it, as the kubelet does.
//
// The package keeps no state besides the two caches: pods come from an injected function
// (the pod manager's view, with statuses), containers from the runtime.
package nodeapi
