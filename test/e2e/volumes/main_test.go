// Package volumes tests pod volumes, ConfigMaps and Secrets beside static pods, and pulls
// with imagePullSecrets, all read from inside real containers.
package volumes

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 6) }
