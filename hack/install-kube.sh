#!/usr/bin/env bash
# Builds the test bed's Kubernetes control plane from the Go module proxy: kube-apiserver and
# kubectl of k8s.io/kubernetes $KUBE_VERSION and etcd $ETCD_VERSION, through the separate module
# in hack/kube, into $KUBE_BIN outside the checkout (see hack/versions-kube.sh). Binaries built
# from the same versions and module sums are reused; a cold build takes minutes and about
# 2.5 GB of memory while kube-apiserver links.
#
# Prints the binaries' directory on stdout, everything else on stderr. Needs no root unless
# $NODEAGENT_CACHE is not writable otherwise, and never reads stdin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions-kube.sh"

log() { printf '[install-kube] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go not found (expected at /usr/local/go/bin)"

mod=$here/kube
grep -qE "^[[:space:]]*k8s\.io/kubernetes $KUBE_VERSION\$" "$mod/go.mod" ||
	die "hack/kube/go.mod does not require k8s.io/kubernetes $KUBE_VERSION (KUBE_VERSION in hack/versions-kube.sh); update both together"
grep -qE "^[[:space:]]*go\.etcd\.io/etcd/server/v3 $ETCD_VERSION\$" "$mod/go.mod" ||
	die "hack/kube/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION (ETCD_VERSION in hack/versions-kube.sh); update both together"

# Without these the binaries call themselves v0.0.0-master, and kube-apiserver derives its
# emulated version (and so its default feature gates) from gitVersion.
IFS=. read -r major minor _ <<<"${KUBE_VERSION#v}"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags="$ldflags -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

# What the binaries are built from; when any of it changes, the next run rebuilds them.
buildinfo="KUBE_VERSION=$KUBE_VERSION
ETCD_VERSION=$ETCD_VERSION
GO_SUM=$(sha256sum <"$mod/go.sum" | cut -c1-16)
LDFLAGS=$ldflags"

built() {
	local b
	for b in kube-apiserver kubectl etcd; do
		[ -x "$KUBE_BIN/$b" ] || return 1
	done
	[ "$(cat "$KUBE_BIN/BUILDINFO" 2>/dev/null)" = "$buildinfo" ]
}

# check_versions DIR: the binaries in DIR run and report the pinned versions.
check_versions() {
	local out
	out=$("$1/kube-apiserver" --version 2>&1) || die "kube-apiserver --version: $out"
	[ "$out" = "Kubernetes $KUBE_VERSION" ] || die "kube-apiserver reports '$out', want Kubernetes $KUBE_VERSION"
	out=$("$1/kubectl" version --client 2>&1) || die "kubectl version --client: $out"
	grep -qx "Client Version: $KUBE_VERSION" <<<"$out" || die "kubectl reports '$out', want Client Version: $KUBE_VERSION"
	out=$("$1/etcd" --version 2>&1) || die "etcd --version: $out"
	grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$out" || die "etcd reports '$out', want etcd Version: ${ETCD_VERSION#v}"
}

cache=$(dirname "$KUBE_BIN")
if ! built; then
	mkdir -p "$cache"
	# One build at a time: parallel `make test` runs wait for the first one and reuse its result.
	exec 9>"$cache/.install.lock"
	if ! flock -n 9; then
		log "another install-kube.sh is building into $KUBE_BIN; waiting for it"
		flock 9
	fi
fi
if ! built; then
	avail=$(awk '/^MemAvailable:/ {print int($2 / 1024 / 1024)}' /proc/meminfo)
	[ "${avail:-0}" -ge 3 ] || log "warning: only ${avail} GB of memory available; linking kube-apiserver needs about 2.5 GB"
	log "building kube-apiserver and kubectl $KUBE_VERSION, etcd $ETCD_VERSION into $KUBE_BIN (about 7 minutes the first time)"
	tmp=$(mktemp -d "$cache/bin.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
	start=$SECONDS
	(cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl </dev/null) ||
		die "go build kube-apiserver kubectl"
	(cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 </dev/null) ||
		die "go build etcd"
	check_versions "$tmp"
	printf '%s\n' "$buildinfo" >"$tmp/BUILDINFO"
	chmod 755 "$tmp"
	rm -rf "$KUBE_BIN" && mv -T "$tmp" "$KUBE_BIN"
	trap - EXIT
	log "built in $((SECONDS - start)) s"
fi
log "ready: kube-apiserver and kubectl $KUBE_VERSION, etcd $ETCD_VERSION in $KUBE_BIN"
echo "$KUBE_BIN"
