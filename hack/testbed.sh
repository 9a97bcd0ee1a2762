#!/usr/bin/env bash
# A private, real test bed: containerd 2.x with CRI and CNI, the locally built test images, and
# two local registries (one open, one with htpasswd auth). Everything lives under DIR, so several
# test beds (INDEX 0..15) run side by side without touching a system containerd.
#
#   hack/testbed.sh up DIR INDEX    start it (or do nothing if DIR already holds a live one)
#   hack/testbed.sh down DIR        stop everything it started and remove DIR
#
# `up` writes DIR/testbed.env (KEY=value lines, no quotes: tests parse it too). While `up` runs,
# the same keys accumulate in DIR/testbed.env.partial, so `down` can clean up a failed `up`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
. "$here/versions.sh"
export PATH=$PATH:/usr/local/go/bin

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

usage() {
	echo "usage: $0 up DIR INDEX | $0 down DIR | $0 restart-containerd DIR" >&2
	exit 2
}

# env_get FILE KEY prints KEY's value from a KEY=value file, without executing it.
env_get() { sed -n "s/^$2=//p" "$1" 2>/dev/null | tail -n1; }

# is_ours PID DIR: the PID is alive and its command line names a path under DIR (guards against
# PID reuse and against touching another test bed's processes).
is_ours() {
	[ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2/"
}

# stop_pids DIR NAME=PID...: SIGTERM to all at once (each takes 1-2 s to exit), wait up to
# 10 s for all of them, then SIGKILL the rest.
stop_pids() {
	local dir=$1 np pids="" i p left
	shift
	for np in "$@"; do
		is_ours "${np#*=}" "$dir" || continue
		log "stopping ${np%=*} (pid ${np#*=})"
		kill -TERM "${np#*=}" 2>/dev/null && pids="$pids ${np#*=}"
	done
	for i in $(seq 100); do
		left=""
		for p in $pids; do [ -d "/proc/$p" ] && left="$left $p"; done
		[ -z "$left" ] && return 0
		sleep 0.1
	done
	log "killing pids$left: still running 10 s after SIGTERM"
	kill -KILL $left 2>/dev/null
	sleep 0.2
}

# ---------------------------------------------------------------------------------------------
# up

# build_tools puts imagebuild and cricleanup in DIR/bin, from a cache keyed by their sources
# and the module graph (linking the gRPC client costs seconds even with a warm build cache).
build_tools() {
	local dir=$1 key cache tmp
	key=$( {
		cd "$repo" && sha256sum hack/imagebuild/main.go hack/cricleanup/main.go go.mod go.sum
		go version
	} | sha256sum | cut -c1-16)
	cache=$NODEAGENT_CACHE/tools-$key
	if [ ! -x "$cache/cricleanup" ]; then
		log "building hack/imagebuild and hack/cricleanup into $cache"
		mkdir -p "$NODEAGENT_CACHE"
		tmp=$(mktemp -d "$NODEAGENT_CACHE/tools-tmp.XXXXXX")
		(cd "$repo" && go build -o "$tmp/" ./hack/imagebuild ./hack/cricleanup) ||
			{ rm -rf "$tmp"; die "go build ./hack/imagebuild ./hack/cricleanup"; }
		mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"
	fi
	cp "$cache/imagebuild" "$cache/cricleanup" "$dir/bin/"
}

# build_images prints the cache directory holding the busybox and pause OCI layouts and tars.
# The key covers every input, so editing imagebuild or pause (or a new Go or busybox) rebuilds.
build_images() {
	local bin=$1 key cache tmp
	key=$( { sha256sum /bin/busybox "$here/imagebuild/main.go" "$here/pause/main.go"; go version; } | sha256sum | cut -c1-16)
	cache=$NODEAGENT_CACHE/images-$key
	if [ -f "$cache/done" ]; then
		echo "$cache"
		return
	fi
	log "building the busybox and pause images into $cache"
	tmp=$(mktemp -d "$NODEAGENT_CACHE/images-tmp.XXXXXX")
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/pause" ./hack/pause) ||
		{ rm -rf "$tmp"; die "go build ./hack/pause"; }
	"$bin/imagebuild" -name "$BUSYBOX_IMAGE" -out "$tmp/busybox" -tar "$tmp/busybox.tar" -busybox /bin/busybox \
		-cmd sh -env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ||
		{ rm -rf "$tmp"; die "imagebuild $BUSYBOX_IMAGE"; }
	"$bin/imagebuild" -name "$PAUSE_IMAGE" -out "$tmp/pause-image" -tar "$tmp/pause.tar" -add "$tmp/pause=/pause" \
		-entrypoint /pause || { rm -rf "$tmp"; die "imagebuild $PAUSE_IMAGE"; }
	touch "$tmp/done"
	# Parallel test beds may race to fill the same cache entry; the first rename wins.
	mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"
	echo "$cache"
}

# build_testserver_image prints the cache directory holding the testserver image's tar: the
# busybox layer plus /testserver (hack/testserver, the probe target of the e2e tests). Its own
# cache entry, keyed by the server's source and module graph, so the other images stay put.
build_testserver_image() {
	local bin=$1 key cache tmp
	key=$( {
		sha256sum /bin/busybox "$here/imagebuild/main.go" "$here/testserver/main.go" "$repo/go.mod" "$repo/go.sum"
		go version
	} | sha256sum | cut -c1-16)
	cache=$NODEAGENT_CACHE/testserver-$key
	if [ -f "$cache/done" ]; then
		echo "$cache"
		return
	fi
	log "building the testserver image into $cache"
	tmp=$(mktemp -d "$NODEAGENT_CACHE/testserver-tmp.XXXXXX")
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/testserver" ./hack/testserver) ||
		{ rm -rf "$tmp"; die "go build ./hack/testserver"; }
	"$bin/imagebuild" -name "$TESTSERVER_IMAGE" -out "$tmp/testserver-image" -tar "$tmp/testserver.tar" \
		-busybox /bin/busybox -add "$tmp/testserver=/testserver" -entrypoint /testserver \
		-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ||
		{ rm -rf "$tmp"; die "imagebuild $TESTSERVER_IMAGE"; }
	touch "$tmp/done"
	mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"
	echo "$cache"
}

write_containerd_config() {
	local dir=$1 shimdir=$2
	cat >"$dir/containerd.toml" <<EOF
# Generated by hack/testbed.sh: a private containerd whose every path is under $dir.
version = 4
root = '$dir/root'
state = '$dir/state'
temp = '$dir/tmp'
imports = []
# Snapshotters and plugins this machine cannot use: skip them instead of logging their failures.
disabled_plugins = [
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.erofs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.differ.v1.erofs',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
]

[plugins.'io.containerd.server.v1.grpc']
  address = '$dir/run/containerd.sock'

[plugins.'io.containerd.server.v1.ttrpc']
  address = '$dir/run/containerd.sock.ttrpc'

[plugins.'io.containerd.shim.v1.manager']
  # A shim socket is this dir plus a 64-hex name, and unix socket paths end at 108 bytes, so
  # containerd caps the dir at 42 characters (testbed.sh falls back to /run when DIR is long).
  socket_dir = '$shimdir'

[plugins.'io.containerd.internal.v1.opt']
  path = '$dir/opt'

[plugins.'io.containerd.image-verifier.v1.bindir']
  bin_dir = '$dir/image-verifier/bin'

[plugins.'io.containerd.nri.v1.nri']
  disable = true
  socket_path = '$dir/run/nri.sock'
  plugin_path = '$dir/nri/plugins'
  plugin_config_path = '$dir/nri/conf.d'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Present locally and pinned, so the CRI plugin never tries to pull it.
    sandbox = '$PAUSE_IMAGE'

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: without this every RunPodSandbox fails with
  # "can't get final child's PID from pipe: EOF" (runc cannot lower oom_score_adj).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = ['$dir/cdi']
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        Root = '$dir/runc'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    # The delegate link first: nodeagent is the only network containerd knows.
    bin_dirs = ['$dir/cni/bin', '$CNI_BIN']
    conf_dir = '$dir/cni/net.d'
    max_conf_num = 1
EOF
}

# write_cni_config points containerd at nodeagent's CNI delegate, as deploy/ does on a node. Every
# agent on this test bed listens in cni/agents/ (the delegate tries each; they share the network
# state in cni/state, so any of them can serve any pod) and runs the real list itself: bridge
# natb<INDEX> on 10.88.<INDEX>.0/24 (agents get these from testbed.env). No loopback entry:
# containerd's CRI plugin adds the loopback network itself.
write_cni_config() {
	local dir=$1 index=$2
	mkdir -p "$dir/cni/net.d" "$dir/cni/agents" "$dir/cni/state"
	cat >"$dir/cni/net.d/10-nodeagent.conflist" <<EOF
{
  "cniVersion": "1.1.0",
  "name": "nodeagent-tb$index",
  "plugins": [
    {
      "type": "nodeagent",
      "socketDir": "$dir/cni/agents",
      "stateDir": "$dir/cni/state",
      "capabilities": {"portMappings": true, "bandwidth": true}
    }
  ]
}
EOF
}

# link_delegate installs the plugin link containerd runs: $NODEAGENT_CNI_BIN (what the caller
# tests), or a fresh build of the checkout's cmd/nodeagent-cni.
link_delegate() {
	local dir=$1 bin=${NODEAGENT_CNI_BIN:-}
	if [ -z "$bin" ]; then
		log "building nodeagent-cni for the CNI delegate"
		(cd "$repo" && CGO_ENABLED=0 go build -o "$dir/bin/nodeagent-cni" ./cmd/nodeagent-cni) || die "go build ./cmd/nodeagent-cni"
		bin=$dir/bin/nodeagent-cni
	fi
	[ -x "$bin" ] || die "NODEAGENT_CNI_BIN $bin is not an executable"
	mkdir -p "$dir/cni/bin"
	ln -sfn "$(realpath "$bin")" "$dir/cni/bin/nodeagent"
}

start_containerd() {
	local dir=$1 pid i
	log "starting containerd (log $dir/containerd.log)"
	# Own session: a Ctrl-C meant for the caller must not kill it before `down` tears pods down.
	# Our bin dir first, so it starts its own containerd-shim-runc-v2, not a distribution one.
	PATH=$CONTAINERD_BIN:$PATH setsid "$CONTAINERD_BIN/containerd" --config "$dir/containerd.toml" \
		</dev/null >>"$dir/containerd.log" 2>&1 &
	pid=$!
	echo "CONTAINERD_PID=$pid" >>"$dir/testbed.env.partial"
	for i in $(seq 300); do
		[ -d "/proc/$pid" ] || { tail -n 30 "$dir/containerd.log" >&2; die "containerd exited at start; log: $dir/containerd.log"; }
		if "$dir/bin/cricleanup" -endpoint "unix://$dir/run/containerd.sock" -version -timeout 3s >/dev/null 2>&1; then
			log "containerd (pid $pid) answers CRI after $((i / 10)).$((i % 10)) s"
			return
		fi
		sleep 0.1
	done
	tail -n 30 "$dir/containerd.log" >&2
	die "containerd did not answer CRI Version within 30 s; log: $dir/containerd.log"
}

import_image() {
	local dir=$1 tarball=$2 ref=$3 i
	"$CONTAINERD_BIN/ctr" -a "$dir/run/containerd.sock" -n k8s.io images import --base-name "${ref%:*}" "$tarball" \
		>>"$dir/ctr.log" 2>&1 || { tail -n 20 "$dir/ctr.log" >&2; die "ctr import $tarball; log: $dir/ctr.log"; }
	# CRI learns about images from containerd events; wait until ListImages shows the name.
	for i in $(seq 100); do
		"$dir/bin/cricleanup" -endpoint "unix://$dir/run/containerd.sock" -list 2>/dev/null | grep -qF " $ref" && return
		sleep 0.1
	done
	die "$ref imported but not listed by CRI ListImages after 10 s"
}

# start_registry NAME PORT [HTPASSWD] starts Debian's docker-registry on 127.0.0.1:PORT.
start_registry() {
	local dir=$1 name=$2 port=$3 htpasswd=${4:-} rdir=$1/registry/$2 pid i code want=200
	mkdir -p "$rdir/data"
	if ss -Hltn "sport = :$port" | grep -q .; then
		die "port $port for $name is already in use (another test bed with the same INDEX?)"
	fi
	cat >"$rdir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $rdir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
	if [ -n "$htpasswd" ]; then
		printf 'auth:\n  htpasswd:\n    realm: nodeagent-testbed\n    path: %s\n' "$htpasswd" >>"$rdir/config.yml"
		want=401
	fi
	setsid /usr/bin/docker-registry serve "$rdir/config.yml" </dev/null >>"$rdir/registry.log" 2>&1 &
	pid=$!
	echo "${name^^}_PID=$pid" >>"$dir/testbed.env.partial"
	for i in $(seq 100); do
		[ -d "/proc/$pid" ] || { tail -n 20 "$rdir/registry.log" >&2; die "$name registry exited at start; log: $rdir/registry.log"; }
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
		[ "$code" = "$want" ] && return
		sleep 0.1
	done
	die "$name registry on 127.0.0.1:$port not ready within 10 s (last HTTP code $code); log: $rdir/registry.log"
}

push_image() {
	local dir=$1 layout=$2 dest=$3 creds=${4:-}
	skopeo --policy "$dir/registry/policy.json" copy --quiet --dest-tls-verify=false ${creds:+--dest-creds "$creds"} \
		"oci:$layout:${BUSYBOX_IMAGE##*:}" "docker://$dest" >>"$dir/registry/skopeo.log" 2>&1 ||
		{ tail -n 20 "$dir/registry/skopeo.log" >&2; die "skopeo push to $dest; log: $dir/registry/skopeo.log"; }
}

up() {
	set -e
	local dir=$1 index=$2 shimdir images testserver password pid
	case "$dir" in /*) ;; *) die "DIR must be an absolute path, got $dir" ;; esac
	case "$dir" in *[[:space:]]*) die "DIR must not contain spaces: $dir" ;; esac
	[[ "$index" =~ ^([0-9]|1[0-5])$ ]] || die "INDEX must be 0..15, got $index"
	# The ttrpc socket, DIR/run/containerd.sock.ttrpc, must fit a 108-byte unix socket path.
	[ ${#dir} -le 80 ] || die "DIR is too long for unix socket paths (${#dir} > 80 characters): $dir"

	if [ -f "$dir/testbed.env" ]; then
		pid=$(env_get "$dir/testbed.env" CONTAINERD_PID)
		if is_ours "$pid" "$dir" && [ -x "$dir/bin/cricleanup" ] &&
			"$dir/bin/cricleanup" -endpoint "unix://$dir/run/containerd.sock" -version -timeout 3s >/dev/null 2>&1; then
			log "test bed in $dir is already up (containerd pid $pid)"
			return 0
		fi
	fi
	if [ -f "$dir/testbed.env" ] || [ -f "$dir/testbed.env.partial" ]; then
		log "$dir holds a dead or half-started test bed; tearing it down first"
		(down "$dir")
	elif [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
		die "$dir exists, is not empty and is not a test bed; refusing to use it"
	fi

	"$here/install-deps.sh"
	mkdir -p "$dir/bin" "$dir/run" "$dir/tmp"
	# The shim socket dir is capped at 42 characters; fall back to a per-INDEX dir in /run.
	shimdir=$dir/s
	[ ${#shimdir} -le 42 ] || shimdir=/run/nodeagent-tb$index
	BUSYBOX_IMAGE=nodeagent.local/busybox:1.36
	PAUSE_IMAGE=nodeagent.local/pause:3.10
	TESTSERVER_IMAGE=nodeagent.local/testserver:1
	cat >"$dir/testbed.env.partial" <<EOF
TESTBED_DIR=$dir
TESTBED_INDEX=$index
SHIM_SOCKET_DIR=$shimdir
EOF

	build_tools "$dir"
	images=$(build_images "$dir/bin")
	testserver=$(build_testserver_image "$dir/bin")

	write_containerd_config "$dir" "$shimdir"
	write_cni_config "$dir" "$index"
	link_delegate "$dir"
	start_containerd "$dir"
	import_image "$dir" "$images/pause.tar" "$PAUSE_IMAGE"
	import_image "$dir" "$images/busybox.tar" "$BUSYBOX_IMAGE"
	import_image "$dir" "$testserver/testserver.tar" "$TESTSERVER_IMAGE"

	log "starting registries on 127.0.0.1:$((5100 + index)) (open) and :$((5200 + index)) (htpasswd)"
	mkdir -p "$dir/registry"
	echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$dir/registry/policy.json"
	password=$(head -c 18 /dev/urandom | base64 | tr -d '+/=')
	htpasswd -Bbc "$dir/registry/htpasswd" testuser "$password" 2>/dev/null || die "htpasswd"
	start_registry "$dir" registry $((5100 + index))
	start_registry "$dir" auth_registry $((5200 + index)) "$dir/registry/htpasswd"
	push_image "$dir" "$images/busybox" "127.0.0.1:$((5100 + index))/busybox:1.36"
	push_image "$dir" "$images/busybox" "127.0.0.1:$((5200 + index))/busybox:1.36" "testuser:$password"

	cat >>"$dir/testbed.env.partial" <<EOF
RUNTIME_ENDPOINT=unix://$dir/run/containerd.sock
CONTAINERD_BIN_DIR=$CONTAINERD_BIN
CONTAINERD_CONFIG=$dir/containerd.toml
CONTAINERD_LOG=$dir/containerd.log
CNI_BIN_DIR=$CNI_BIN
CNI_CONF_DIR=$dir/cni/net.d
CNI_BRIDGE=natb$index
CNI_NETWORK_NAME=nodeagent-tb$index
CNI_STATE_DIR=$dir/cni/state
CNI_SOCKET_DIR=$dir/cni/agents
POD_SUBNET=10.88.$index.0/24
BUSYBOX_IMAGE=$BUSYBOX_IMAGE
PAUSE_IMAGE=$PAUSE_IMAGE
TESTSERVER_IMAGE=$TESTSERVER_IMAGE
BUSYBOX_OCI_LAYOUT=$images/busybox
BUSYBOX_OCI_ARCHIVE=$images/busybox.tar
REGISTRY=127.0.0.1:$((5100 + index))
AUTH_REGISTRY=127.0.0.1:$((5200 + index))
REGISTRY_USER=testuser
REGISTRY_PASSWORD=$password
CRICLEANUP=$dir/bin/cricleanup
EOF
	sort "$dir/testbed.env.partial" >"$dir/testbed.env"
	rm "$dir/testbed.env.partial"
	log "up: $dir (env in $dir/testbed.env)"
}

# ---------------------------------------------------------------------------------------------
# down: every step runs even if an earlier one failed.

unmount_under() {
	local dir=$1 m
	# Deepest first; mountinfo escapes spaces and such as octal (\040), which printf %b decodes.
	awk -v d="$dir" '{ if ($5 == d || index($5, d "/") == 1) print length($5), $5 }' /proc/self/mountinfo |
		sort -rn | cut -d' ' -f2- | while read -r m; do
		m=$(printf '%b' "$m")
		umount "$m" 2>/dev/null || umount -l "$m" || log "could not unmount $m"
	done
}

# cleanup_iptables removes NAT rules and chains the bridge and portmap plugins left for this
# network (its name or subnet appears in them): CNI DEL never ran for pods killed without CRI.
cleanup_iptables() {
	local index=$1 saved chains script c
	command -v iptables-save >/dev/null || return 0
	saved=$(iptables-save -t nat) || return 0
	chains=$(printf '%s\n' "$saved" | awk -v net="nodeagent-tb$index" -v subnet="10.88.$index." '
		/^-A CNI-/ && $2 !~ /^CNI-HOSTPORT-/ && (index($0, "\\\"" net "\\\"") || index($0, subnet)) { print $2 }' | sort -u)
	script=$(printf '%s\n' "$saved" | awk -v net="nodeagent-tb$index" -v subnet="10.88.$index." -v chains=" $(echo $chains) " '
		/^-A / {
			jump = ""; for (i = 3; i < NF; i++) if ($i == "-j") jump = $(i + 1)
			mine = index(chains, " " $2 " ") > 0
			refs = jump != "" && index(chains, " " jump " ") > 0
			if (!mine && (refs || index($0, "\\\"" net "\\\"") || index($0, subnet))) { sub(/^-A /, "-D "); print }
		}')
	[ -n "$chains$script" ] || return 0
	log "removing leftover iptables NAT rules of 10.88.$index.0/24: $(echo $chains)"
	{
		echo '*nat'
		[ -z "$script" ] || printf '%s\n' "$script"
		for c in $chains; do echo "-F $c"; done
		for c in $chains; do echo "-X $c"; done
		echo COMMIT
	} | iptables-restore -w 10 --noflush || log "iptables cleanup failed (see iptables-save -t nat)"
}

# shared_in_use: another test bed (or any containerd) may be creating pods right now: it has a
# bridge as soon as its first CNI ADD starts (before portmap runs) and a shim before runc
# creates a cgroup.
shared_in_use() {
	ip -o link show type bridge 2>/dev/null | grep -q ' natb[0-9]*:' || pgrep -f containerd-shim >/dev/null
}

# cleanup_portmap_chains removes portmap's shared CNI-HOSTPORT-* chains once no pod anywhere
# uses them. The restore is atomic: -X of a CNI-HOSTPORT-DNAT that gained a rule meanwhile
# aborts all of it.
cleanup_portmap_chains() {
	local saved c
	saved=$(iptables-save -t nat 2>/dev/null) || return 0
	printf '%s\n' "$saved" | grep -q '^:CNI-HOSTPORT-DNAT ' || return 0
	printf '%s\n' "$saved" | grep -q '^-A CNI-HOSTPORT-DNAT ' && return 0
	log "removing portmap's shared CNI-HOSTPORT-* chains (no pod uses them)"
	{
		echo '*nat'
		printf '%s\n' "$saved" | grep -E '^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j CNI-HOSTPORT-' | sed 's/^-A /-D /'
		echo '-X CNI-HOSTPORT-DNAT'
		for c in $(printf '%s\n' "$saved" | sed -n 's/^:\(CNI-HOSTPORT-[A-Z]*\) .*/\1/p' | grep -vx CNI-HOSTPORT-DNAT); do
			echo "-F $c"
			echo "-X $c"
		done
		echo COMMIT
	} | iptables-restore -w 10 --noflush || log "shared portmap chains in use again; left in place"
}

# stop_shims kills shims (and their containers) still attached to this containerd: left over
# when cleanup through CRI failed or something ran outside CRI.
stop_shims() {
	local dir=$1 p c kids
	for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $dir/run/containerd.sock" || true); do
		is_ours "$p" "$dir" || continue
		kids=$(cat /proc/"$p"/task/*/children 2>/dev/null)
		log "killing leftover shim pid $p${kids:+ and its children $kids}"
		for c in $kids; do kill -KILL "$c" 2>/dev/null; done
		kill -KILL "$p" 2>/dev/null
	done
}

down() {
	set +e
	local dir=$1 envf index pid ns id shimdir
	case "$dir" in /*) ;; *) die "DIR must be an absolute path, got $dir" ;; esac
	[ -d "$dir" ] || { log "nothing at $dir"; return 0; }
	envf=$dir/testbed.env
	[ -f "$envf" ] || envf=$dir/testbed.env.partial
	if [ ! -f "$envf" ]; then
		[ -n "$(ls -A "$dir" 2>/dev/null)" ] && die "$dir has no testbed.env; not a test bed, not removing it"
		rmdir "$dir"
		return 0
	fi
	index=$(env_get "$envf" TESTBED_INDEX)
	shimdir=$(env_get "$envf" SHIM_SOCKET_DIR)
	pid=$(env_get "$envf" CONTAINERD_PID)

	if is_ours "$pid" "$dir" && [ -x "$dir/bin/cricleanup" ]; then
		log "removing pod sandboxes through CRI (so CNI DEL runs)"
		"$dir/bin/cricleanup" -endpoint "unix://$dir/run/containerd.sock" -timeout 2m >&2 ||
			log "CRI cleanup failed; killing what is left (log: $dir/containerd.log)"
	fi
	# Containers created outside CRI (ctr) or left by a failed cleanup: runc kills them and
	# removes their cgroups.
	for ns in "$dir"/runc/*/; do
		[ -d "$ns" ] || continue
		for id in $(runc --root "$ns" list -q 2>/dev/null); do
			log "deleting leftover runc container $id"
			runc --root "$ns" delete --force "$id" >/dev/null 2>&1
		done
	done
	stop_pids "$dir" containerd="$pid" registry="$(env_get "$envf" REGISTRY_PID)" \
		auth-registry="$(env_get "$envf" AUTH_REGISTRY_PID)"
	stop_shims "$dir"

	unmount_under "$dir"
	if [ -n "$index" ]; then
		if ip link show "natb$index" >/dev/null 2>&1; then
			log "deleting bridge natb$index"
			ip link del "natb$index"
		fi
		cleanup_iptables "$index"
	fi
	# The last test bed out also removes what all of them share: portmap's chains and the
	# k8s.io cgroup that holds containers without a cgroup parent (runc removes only <id>).
	if ! shared_in_use; then
		cleanup_portmap_chains
		rmdir /sys/fs/cgroup/*/k8s.io 2>/dev/null
	fi
	case "$shimdir" in /run/nodeagent-tb*) rm -rf "$shimdir" ;; esac
	rm -rf "$dir" || log "could not remove $dir"
	log "down: $dir removed"
}

# restart_containerd stops containerd and starts it again on the same state, as an upgrade or
# a crash-and-restart would: the shims and the pods keep running meanwhile.
restart_containerd() {
	set -e
	local dir=$1 pid
	[ -f "$dir/testbed.env" ] || die "no test bed in $dir"
	pid=$(env_get "$dir/testbed.env" CONTAINERD_PID)
	is_ours "$pid" "$dir" || die "containerd pid $pid of $dir is not running"
	stop_pids "$dir" containerd="$pid"
	: >"$dir/testbed.env.partial" # start_containerd records the new PID there
	start_containerd "$dir"
	pid=$(env_get "$dir/testbed.env.partial" CONTAINERD_PID)
	rm -f "$dir/testbed.env.partial"
	sed -i "s/^CONTAINERD_PID=.*/CONTAINERD_PID=$pid/" "$dir/testbed.env"
	log "containerd restarted (pid $pid)"
}

case "${1:-}" in
restart-containerd)
	[ $# -eq 2 ] || usage
	restart_containerd "$2"
	;;
up)
	[ $# -eq 3 ] || usage
	up "$2" "$3"
	;;
down)
	[ $# -eq 2 ] || usage
	down "$2"
	;;
*) usage ;;
esac
