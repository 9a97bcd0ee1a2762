// Package probes tests health probes and lifecycle hooks as a user sees them: liveness
// failures restart a container, readiness drives the pod's Ready condition, a startup probe
// holds liveness off, every probe handler (httpGet, exec, tcpSocket, grpc) passes and fails
// for real, timeouts are kept, and a preStop hook runs before SIGTERM.
//
// The pods run hack/testserver (framework.TB.TestserverImage), whose answers each test
// flips by creating or removing a file in the container through CRI ExecSync.
package probes

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 5) }
