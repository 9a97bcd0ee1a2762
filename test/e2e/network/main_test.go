// Package network tests pod networking through nodeagent's CNI delegate with the real plugins:
// containerd runs the delegate, the agent runs bridge + host-local + portmap + bandwidth.
//
// The tests here do not run in parallel: they count the network's leases and iptables rules
// before and after, which other pods on the same test bed would disturb.
package network

import (
	"testing"

	"github.com/nodeagent/nodeagent/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, 7) }
