// Package kubeoutage stops the API server under a running node agent. It has its own
// control plane (and test bed), since an outage would break every other test using one.
package kubeoutage

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
	"github.com/nodeagent/nodeagent/test/kubetb"
)

var cluster *kubetb.Cluster

func TestMain(m *testing.M) {
	framework.MainWith(m, 9, kubetb.MainSetup(func(c *kubetb.Cluster) { cluster = c }))
}
