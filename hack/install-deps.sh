#!/usr/bin/env bash
# Installs what the test bed and the demo need, reusing whatever is already there:
# Debian packages, containerd + its runc shim + ctr, and the CNI plugins, the last two built
# with `go install` at pinned versions into a cache outside the checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"

log() { printf '[install-deps] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "must run as root (it installs packages and later runs containerd)"
	exit 1
fi

missing=()
for p in $APT_PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq </dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
	# Debian's docker-registry package starts a system registry on :5000; the test bed runs
	# its own on other ports, so leave the system one as the package set it up.
fi

export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { log "go not found (expected at /usr/local/go/bin)"; exit 1; }

gobuild() { # gobuild <dest bin dir> <package@version>...
	local dest=$1; shift
	mkdir -p "$dest"
	GOBIN=$dest CGO_ENABLED=0 GOFLAGS=-mod=mod go install "$@"
}

if [ ! -x "$CONTAINERD_BIN/containerd" ] || [ ! -x "$CONTAINERD_BIN/containerd-shim-runc-v2" ] || [ ! -x "$CONTAINERD_BIN/ctr" ]; then
	log "building containerd $CONTAINERD_VERSION into $CONTAINERD_BIN (a few minutes the first time)"
	gobuild "$CONTAINERD_BIN.tmp" \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
	rm -rf "$CONTAINERD_BIN" && mv "$CONTAINERD_BIN.tmp" "$CONTAINERD_BIN"
fi

if [ ! -x "$CNI_BIN/bridge" ] || [ ! -x "$CNI_BIN/portmap" ]; then
	log "building CNI plugins $CNI_PLUGINS_VERSION into $CNI_BIN"
	p=github.com/containernetworking/plugins/plugins
	gobuild "$CNI_BIN.tmp" \
		"$p/main/bridge@$CNI_PLUGINS_VERSION" "$p/main/loopback@$CNI_PLUGINS_VERSION" \
		"$p/ipam/host-local@$CNI_PLUGINS_VERSION" "$p/meta/portmap@$CNI_PLUGINS_VERSION" \
		"$p/meta/bandwidth@$CNI_PLUGINS_VERSION" "$p/meta/firewall@$CNI_PLUGINS_VERSION"
	rm -rf "$CNI_BIN" && mv "$CNI_BIN.tmp" "$CNI_BIN"
fi
log "ready: containerd in $CONTAINERD_BIN, CNI plugins in $CNI_BIN"
