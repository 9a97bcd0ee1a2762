// Package restart tests the restart loop: exits seen through runtime events, restart policies
// and backoff, init containers and sidecars, and recovery after the agent or containerd dies.
package restart

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 4) }
