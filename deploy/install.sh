#!/usr/bin/env bash
# Installs nodeagent as a systemd service on this machine.
#
#   deploy/install.sh [--root DIR] [--no-start] [--bin-dir DIR]
#
#   --bin-dir DIR  where nodeagent and nodeagent-cni were built (default bin/, make build)
#   --root DIR     install under DIR instead of / (an image being built, or a test). The
#                  running system is not touched: the unit is enabled offline
#                  (systemctl --root) and nothing is started.
#   --no-start     install and enable nothing in systemd; print the commands instead.
#
# Environment: PREFIX (/usr/local: binaries go to $PREFIX/bin), CNI_BIN_DIR (/opt/cni/bin),
# CNI_CONF_DIR (/etc/cni/net.d), CONTAINERD (containerd: the binary asked for its version).
#
# What it does, each step safe to repeat:
#   1. $PREFIX/bin/nodeagent and the unit /etc/systemd/system/nodeagent.service;
#   2. /etc/nodeagent/config.yaml from deploy/config.yaml, only if there is none (yours is
#      kept), and the manifest directory /etc/nodeagent/manifests;
#   3. the CNI delegate and its network config (deploy/cni/install.sh);
#   4. containerd's side: containerd must run the delegate from CNI_CONF_DIR/CNI_BIN_DIR
#      (its defaults). A containerd config is never edited: on containerd 2.x whose config
#      imports /etc/containerd/conf.d/*.toml a drop-in is written there (if no config exists,
#      a two-line one that only adds that import); otherwise the lines to add are printed;
#   5. systemctl daemon-reload, enable, and (re)start. Restarting the agent never stops a pod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

root=""
start=1
bin_dir=bin
while [ $# -gt 0 ]; do
	case $1 in
	--root) root=${2:?--root needs a directory}; shift 2 ;;
	--root=*) root=${1#--root=}; shift ;;
	--no-start) start=0; shift ;;
	--bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
	--bin-dir=*) bin_dir=${1#--bin-dir=}; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ -n "$root" ]; then
	mkdir -p "$root"
	root=$(cd "$root" && pwd)
	[ "$root" = / ] && root=""
fi
prefix=${PREFIX:-/usr/local}
cni_bin=${CNI_BIN_DIR:-/opt/cni/bin}
cni_conf=${CNI_CONF_DIR:-/etc/cni/net.d}
containerd=${CONTAINERD:-containerd}

log() { printf '[install] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for b in nodeagent nodeagent-cni; do
	[ -x "$bin_dir/$b" ] || die "no $bin_dir/$b (run make build, or pass --bin-dir)"
done
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
	die "run as root (or with --root DIR to install into a directory)"
fi

# write_file DEST MODE: stdin to DEST through a temp file and a rename, so nothing ever
# reads half a file (containerd and systemd watch some of these directories).
write_file() {
	local dest=$1 mode=$2 tmp
	mkdir -p "$(dirname "$dest")"
	tmp=$(mktemp "$(dirname "$dest")/.nodeagent.XXXXXX")
	cat >"$tmp"
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$dest"
}

# 1. The binary and the unit. A running agent keeps its old binary until the restart below.
write_file "$root$prefix/bin/nodeagent" 0755 <"$bin_dir/nodeagent"
log "binary $prefix/bin/nodeagent"
sed "s#^ExecStart=/usr/local/bin/nodeagent #ExecStart=$prefix/bin/nodeagent #" "$here/nodeagent.service" |
	write_file "$root/etc/systemd/system/nodeagent.service" 0644
log "unit /etc/systemd/system/nodeagent.service"

# 2. Configuration and the manifest directory. The config may hold the node's settings and
# paths to credentials: never replaced, and readable by root only.
mkdir -p "$root/etc/nodeagent/manifests"
if [ -e "$root/etc/nodeagent/config.yaml" ]; then
	log "config /etc/nodeagent/config.yaml exists: kept (the new default is deploy/config.yaml)"
else
	write_file "$root/etc/nodeagent/config.yaml" 0600 <"$here/config.yaml"
	log "config /etc/nodeagent/config.yaml (default)"
fi
log "manifest directory /etc/nodeagent/manifests"

# 3. The CNI delegate: deploy/cni/install.sh, pointed into the root.
CNI_BIN_DIR="$root$cni_bin" CNI_CONF_DIR="$root$cni_conf" PREFIX="$root$prefix" \
	"$here/cni/install.sh" "$bin_dir/nodeagent-cni"
if [ -n "$root" ]; then
	# The link must name the delegate as the installed system will see it.
	ln -sfn "$prefix/bin/nodeagent-cni" "$root$cni_bin/nodeagent"
fi

# 4. containerd. Its CNI defaults are conf_dir /etc/cni/net.d and bin_dirs [/opt/cni/bin],
# which is where step 3 put the delegate; the drop-in states them (and max_conf_num = 1, so
# only nodeagent's network is used) rather than relying on them.
missing_cap_sys_resource() {
	# CapEff bit 24 (CAP_SYS_RESOURCE). Without it runc cannot lower oom_score_adj and every
	# RunPodSandbox fails with "can't get final child's PID from pipe: EOF".
	local eff
	eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null) || return 1
	[ -n "$eff" ] && (( (16#$eff >> 24 & 1) == 0 ))
}
dropin_v2() {
	cat <<TOML
# Written by nodeagent's install.sh: containerd's CRI plugin runs nodeagent's CNI delegate,
# and nodeagent runs the node's real network. Edit freely; a reinstall rewrites this file.
version = 3

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['$cni_bin']
  conf_dir = '$cni_conf'
  max_conf_num = 1
TOML
	if missing_cap_sys_resource; then
		cat <<TOML

# This host's root lacks CAP_SYS_RESOURCE (a container or an unprivileged guest): without
# this every pod sandbox fails with "can't get final child's PID from pipe: EOF".
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
TOML
	fi
}
snippet_v1() {
	cat <<TOML
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$cni_bin"
  conf_dir = "$cni_conf"
  max_conf_num = 1
TOML
	if missing_cap_sys_resource; then
		printf '# root lacks CAP_SYS_RESOURCE here; under [plugins."io.containerd.grpc.v1.cri"]:\n#   restrict_oom_score_adj = true\n'
	fi
}

ctr_config=$root/etc/containerd/config.toml
ctr_dropin=$root/etc/containerd/conf.d/nodeagent.toml
ctr_major=""
if ver=$("$containerd" --version 2>/dev/null); then
	# "containerd <module> v2.4.2 <commit>"
	ctr_major=$(printf '%s\n' "$ver" | sed -n 's/.* v\{0,1\}\([0-9][0-9]*\)\.[0-9][0-9]*\.[0-9].*/\1/p' | head -n1)
fi
imports_confd() { grep -Eq "^[[:space:]]*imports[[:space:]]*=.*/etc/containerd/conf\.d/(\*\.toml|)['\"]" "$1"; }
# Settings a drop-in would silently replace (containerd replaces lists, not merges them).
sets_cni() { grep -Eqs "^[[:space:]]*(bin_dirs?|conf_dir|max_conf_num)[[:space:]]*=" "$@"; }
restart_note=0
case $ctr_major in
2|[3-9])
	if [ ! -e "$ctr_config" ]; then
		# No config: containerd runs on defaults and reads no drop-ins at all. This file
		# changes nothing but that.
		printf '# Written by nodeagent install.sh: containerd defaults, plus the drop-ins.\nversion = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n' |
			write_file "$ctr_config" 0644
		log "containerd: no config.toml; wrote one that only imports /etc/containerd/conf.d/*.toml"
	fi
	others=()
	for f in "$root"/etc/containerd/conf.d/*.toml; do
		[ -e "$f" ] && [ "$f" != "$ctr_dropin" ] && others+=("$f")
	done
	if ! imports_confd "$ctr_config"; then
		log "containerd: /etc/containerd/config.toml does not import /etc/containerd/conf.d/*.toml; not editing it."
		log "  Add the CNI settings below to it (or add imports = [\"/etc/containerd/conf.d/*.toml\"] and rerun):"
		dropin_v2 | sed 's/^/    /' >&2
	elif sets_cni "$ctr_config" "${others[@]}"; then
		log "containerd: your config sets CNI paths already; not overriding them. Make sure they say:"
		dropin_v2 | sed 's/^/    /' >&2
	else
		dropin_v2 | write_file "$ctr_dropin" 0644
		log "containerd: drop-in /etc/containerd/conf.d/nodeagent.toml"
		restart_note=1
	fi
	;;
1)
	# containerd 1.x merges an imported file's plugin section over the whole main one, so a
	# drop-in would wipe the user's CRI settings: print instead.
	log "containerd 1.x: add to /etc/containerd/config.toml (not edited by this script):"
	snippet_v1 | sed 's/^/    /' >&2
	;;
*)
	log "containerd: version unknown ($containerd --version failed); point its CRI plugin's CNI at"
	log "  conf_dir $cni_conf and bin_dirs [$cni_bin] (containerd's defaults), max_conf_num = 1"
	;;
esac
if [ "$restart_note" = 1 ]; then
	log "containerd reads its config at start: systemctl restart containerd (running containers keep running)"
fi

# 5. systemd.
if [ "$start" = 0 ]; then
	log "not started (--no-start). To start: systemctl daemon-reload && systemctl enable --now nodeagent"
elif [ -n "$root" ]; then
	if command -v systemctl >/dev/null; then
		systemctl --root="$root" enable nodeagent.service
		log "enabled in $root (offline); started at its next boot"
	else
		log "systemctl not found: enable nodeagent.service in $root yourself"
	fi
else
	systemctl daemon-reload
	systemctl enable nodeagent.service
	# restart, not start: a reinstall must run the new binary. Pods keep running
	# (KillMode=process); the agent adopts them when it comes back.
	systemctl restart nodeagent.service
	log "nodeagent started: systemctl status nodeagent; journalctl -u nodeagent -f"
fi
