# Pinned versions of the test bed's Kubernetes control plane (kube-apiserver, kubectl, etcd),
# built by hack/install-kube.sh from the separate module in hack/kube. Sourced by that script
# and read by test/kubetb. hack/kube/go.mod must require the same versions; install-kube.sh
# refuses to build when they differ.
. "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

KUBE_VERSION=v1.36.3
ETCD_VERSION=v3.6.8 # the etcd k8s.io/kubernetes $KUBE_VERSION is tested with

# The binaries live outside the checkout, keyed by version; bin/BUILDINFO records what built them.
KUBE_BIN=$NODEAGENT_CACHE/kube-$KUBE_VERSION/bin
