// Package chaos is the short cycle of the chaos run (test/chaos, `make chaos`) that
// `make test` keeps: the same workload and the same counts, for two cycles, one of them with
// a containerd restart.
package chaos

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 12) }
