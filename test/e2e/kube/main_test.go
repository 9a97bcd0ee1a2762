// Package kube tests nodeagent as a node of a real Kubernetes control plane: kube-apiserver
// and etcd 3.6 built by hack/install-kube.sh, with the Node authorizer, NodeRestriction and
// the ServiceAccount admission plugin on, as real clusters run. Every test's agent is its own
// node, with its own node credentials (system:node:<name>), driven through kubectl.
package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
	"github.com/nodeagent/nodeagent/test/kubetb"
)

// cluster is the package's control plane.
var cluster *kubetb.Cluster

func TestMain(m *testing.M) {
	framework.MainWith(m, 8, func() (func(), error) {
		dir, err := os.MkdirTemp("", "nodeagent-kube-e2e-")
		if err != nil {
			return nil, err
		}
		c, err := kubetb.Start(context.Background(), filepath.Join(dir, "cluster"), os.Stderr)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("control plane: %w", err)
		}
		cluster = c
		return func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: stop the control plane: %v\n", err)
			}
			os.RemoveAll(dir)
		}, nil
	})
}
