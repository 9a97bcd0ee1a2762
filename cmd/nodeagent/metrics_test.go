package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodeagent/nodeagent/pkg/network"
)

func TestAgentRegistryHasEveryCollectorAndIsTheAgentsOwn(t *testing.T) {
	m, err := newAgentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	// A second agent in the same process (tests) must not clash: nothing is global.
	if _, err := newAgentMetrics(); err != nil {
		t.Fatalf("a second registry: %v", err)
	}
	m.observeCNI(network.Call{Command: network.CommandAdd, PodUID: "u1", Took: 300 * time.Millisecond})
	m.observeCNI(network.Call{Command: network.CommandAdd, Took: time.Second, Err: errors.New("no IP left")})
	m.observeCNI(network.Call{Command: "BOGUS", Took: time.Millisecond, Err: errors.New("unknown")})

	want := `
# HELP nodeagent_cni_operations_total CNI calls the delegate forwarded to the agent, by command and result (success, error).
# TYPE nodeagent_cni_operations_total counter
nodeagent_cni_operations_total{command="ADD",result="error"} 1
nodeagent_cni_operations_total{command="ADD",result="success"} 1
nodeagent_cni_operations_total{command="other",result="error"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "nodeagent_cni_operations_total"); err != nil {
		t.Error(err)
	}
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"go_goroutines", "process_cpu_seconds_total", "nodeagent_cni_operation_duration_seconds"} {
		if !names[n] {
			t.Errorf("registry lacks %s", n)
		}
	}
	if n := testutil.CollectAndCount(m.cniDuration); n != 2 {
		t.Errorf("%d CNI duration series, want ADD and other", n)
	}
}
