// Package pods tests the life of standalone pods: start, labels, edit, delete, bad manifests.
package pods

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 1) }
