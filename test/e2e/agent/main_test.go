// Package agent tests the agent process itself: configuration, shutdown and restart.
package agent

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 3) }
