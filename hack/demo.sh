#!/usr/bin/env bash
# `make demo`: a private containerd test bed, nodeagent in the foreground serving the example
# manifests from deploy/examples, and the web pod's IP with a curl that answers. Ctrl-C stops
# the agent; the test bed (and with it every pod) is torn down on the way out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

demo_dir=/var/tmp/nodeagent-demo
index=15
agent=${NODEAGENT_BIN:-$repo/bin/nodeagent}
# The CNI delegate containerd runs; testbed.sh links it rather than building its own.
export NODEAGENT_CNI_BIN=${NODEAGENT_CNI_BIN:-$repo/bin/nodeagent-cni}
node_name=${NODE_NAME:-$(hostname -s | tr '[:upper:]' '[:lower:]')}
debug_address=127.0.0.1:10248
pod=web-$node_name

log() { printf '[demo] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the agent drives containerd, mounts and network namespaces"
if ss -Hltn "sport = :${debug_address##*:}" | grep -q .; then
	die "something already listens on $debug_address (another demo?); stop it first"
fi
if [ ! -x "$agent" ] || [ ! -x "$NODEAGENT_CNI_BIN" ]; then
	log "building $agent and $NODEAGENT_CNI_BIN"
	make -C "$repo" build
fi

watcher=
teardown() {
	# A second Ctrl-C must not leave a half-removed test bed; down has its own deadlines.
	trap '' INT TERM
	trap - EXIT
	[ -z "$watcher" ] || kill "$watcher" 2>/dev/null || true
	log "tearing down the demo test bed (pods, containerd, registries, $demo_dir)"
	"$here/testbed.sh" down "$demo_dir"
}
trap teardown EXIT
trap 'exit 130' INT TERM

"$here/testbed.sh" up "$demo_dir" "$index"
mkdir -p "$demo_dir/manifests"
cp "$repo"/deploy/examples/*.yaml "$demo_dir/manifests/"
# shellcheck disable=SC1091 # written by testbed.sh up
. "$demo_dir/testbed.env"

# pod_field FIELD prints one string field of $pod from the agent's /pods (a v1.PodList).
# No jq on a fresh machine: split the list at each item's metadata (name is ObjectMeta's first
# JSON field) and read the field from this pod's chunk only.
pod_field() {
	curl -fsS -m 2 "http://$debug_address/pods" 2>/dev/null | tr -d ' \n\t' |
		sed 's/"metadata":{"name":"/\n&/g' | grep -F "\"metadata\":{\"name\":\"$pod\"" |
		grep -o "\"$1\":\"[^\"]*\"" | head -n1 | cut -d'"' -f4
}

# The watcher reports the pod once it runs; Ctrl-C ignores it (a background job), so the
# teardown kills it by PID.
(
	deadline=$((SECONDS + 120))
	while [ $SECONDS -lt $deadline ]; do
		ip=$(pod_field podIP || true)
		if [ "$(pod_field phase || true)" = Running ] && [ -n "$ip" ]; then
			log "pod $pod is Running with IP $ip"
			log "curl -sS http://$ip/"
			curl -sS -m 5 --retry 5 --retry-connrefused --retry-delay 1 "http://$ip/" >&2 || log "curl http://$ip/ failed"
			log "Ctrl-C stops the agent; pods are torn down with the demo test bed"
			exit 0
		fi
		sleep 1
	done
	log "pod $pod not Running with an IP after 120 s; see the agent log above and $CONTAINERD_LOG"
) &
watcher=$!

log "starting $agent as node $node_name (debug endpoints on http://$debug_address)"
status=0
"$agent" \
	--node-name "$node_name" \
	--root-dir "$demo_dir/agent" \
	--runtime-endpoint "$RUNTIME_ENDPOINT" \
	--pod-manifest-path "$demo_dir/manifests" \
	--debug-address "$debug_address" \
	--pod-logs-dir "$demo_dir/pod-logs" \
	--pod-cidr "$POD_SUBNET" \
	--cni-bridge "$CNI_BRIDGE" \
	--cni-network-name "$CNI_NETWORK_NAME" \
	--cni-bin-dir "$CNI_BIN_DIR" \
	--cni-state-dir "$CNI_STATE_DIR" \
	--cni-socket "$CNI_SOCKET_DIR/$node_name.sock" \
	--log-level info \
	--log-format text || status=$?
log "agent exited with status $status"
exit "$status"
