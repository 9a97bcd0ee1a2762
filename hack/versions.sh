# Pinned versions of the test bed's tools. Sourced by the other hack/ scripts.
# Changing a version changes the cache key, so the next run rebuilds that tool only.
CONTAINERD_VERSION=v2.4.2
CNI_PLUGINS_VERSION=v1.9.1

# Built tools live outside the checkout, keyed by version, so a fresh clone reuses them.
NODEAGENT_CACHE=${NODEAGENT_CACHE:-/var/cache/nodeagent-testbed}
CONTAINERD_BIN=$NODEAGENT_CACHE/containerd-$CONTAINERD_VERSION/bin
CNI_BIN=$NODEAGENT_CACHE/cni-plugins-$CNI_PLUGINS_VERSION/bin

# Debian packages the test bed needs.
APT_PACKAGES="runc busybox-static iproute2 iptables procps docker-registry skopeo apache2-utils curl ca-certificates"
