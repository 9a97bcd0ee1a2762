// Package kube tests nodeagent as a node of a real Kubernetes control plane: kube-apiserver
// and etcd 3.6 built by hack/install-kube.sh, with the Node authorizer, NodeRestriction and
// the ServiceAccount admission plugin on, as real clusters run. Every test's agent is its own
// node, with its own node credentials (system:node:<name>), driven through kubectl.
package kube

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
	"github.com/nodeagent/nodeagent/test/kubetb"
)

// cluster is the package's control plane.
var cluster *kubetb.Cluster

func TestMain(m *testing.M) {
	framework.MainWith(m, 8, kubetb.MainSetup(func(c *kubetb.Cluster) { cluster = c }))
}
