#!/usr/bin/env bash
# Installs nodeagent's CNI delegate for containerd: the plugin link and the network config.
#
#   deploy/cni/install.sh [DELEGATE]     DELEGATE defaults to bin/nodeagent-cni (make build)
#
# Environment (defaults are containerd's own CNI defaults):
#   CNI_BIN_DIR   /opt/cni/bin      where containerd looks for plugins; the agent's --cni-bin-dir
#                                   must hold bridge, host-local, portmap and bandwidth (v1.5+)
#   CNI_CONF_DIR  /etc/cni/net.d    containerd's cni conf_dir
#   PREFIX        /usr/local        the delegate binary goes to $PREFIX/bin/nodeagent-cni
#
# The config points the delegate at the agent's defaults (--cni-socket /run/nodeagent/cni.sock,
# --cni-state-dir /var/lib/nodeagent/cni); change both sides together. containerd uses the
# first config in name order, so any other .conf/.conflist in CNI_CONF_DIR is reported: move
# it away, or containerd may run it instead of nodeagent's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-bin/nodeagent-cni}
bin_dir=${CNI_BIN_DIR:-/opt/cni/bin}
conf_dir=${CNI_CONF_DIR:-/etc/cni/net.d}
prefix=${PREFIX:-/usr/local}

log() { printf '[install-cni] %s\n' "$*" >&2; }
[ -x "$src" ] || { log "no delegate binary at $src (run make build, or pass its path)"; exit 1; }

install -D -m 0755 "$src" "$prefix/bin/nodeagent-cni"
mkdir -p "$bin_dir" "$conf_dir"
ln -sfn "$prefix/bin/nodeagent-cni" "$bin_dir/nodeagent"
log "plugin link $bin_dir/nodeagent -> $prefix/bin/nodeagent-cni"

# Written under a temp name and renamed: containerd watches the directory and must never load
# half a file.
tmp=$(mktemp "$conf_dir/.nodeagent.XXXXXX")
cp "$here/05-nodeagent.conflist" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$conf_dir/05-nodeagent.conflist"
log "network config $conf_dir/05-nodeagent.conflist"

others=$(find "$conf_dir" -maxdepth 1 -type f \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) ! -name 05-nodeagent.conflist | sort)
if [ -n "$others" ]; then
	log "other CNI configs in $conf_dir (containerd uses the first by name; move them away):"
	printf '  %s\n' $others >&2
fi
