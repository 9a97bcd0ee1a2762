// Package kubeoutage stops the API server under a running node agent. It has its own
// control plane (and test bed), since an outage would break every other test using one.
package kubeoutage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
	"github.com/nodeagent/nodeagent/test/kubetb"
)

var cluster *kubetb.Cluster

func TestMain(m *testing.M) {
	framework.MainWith(m, 9, func() (func(), error) {
		dir, err := os.MkdirTemp("", "nodeagent-kubeoutage-e2e-")
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
