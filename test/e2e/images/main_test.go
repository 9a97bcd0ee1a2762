// Package images tests image pull policies and pulls from a real local registry.
package images

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 2) }
