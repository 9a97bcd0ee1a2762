package chaos

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/test/chaos/check"
	"github.com/nodeagent/nodeagent/test/chaos/workload"
	"github.com/nodeagent/nodeagent/test/e2e/framework"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// hostPort of the workload's hostport pod: 32000 + 10 x the test bed index, as test/chaos.
const hostPort = 32000 + 10*12

// node is the workload's view of the framework's agent and the package's test bed.
type node struct{ a *framework.Agent }

func (n node) KillAgent() error {
	n.a.Signal(syscall.SIGKILL, 10*time.Second)
	return nil
}

func (n node) StartAgent() error {
	n.a.Start()
	return nil
}

func (n node) RestartContainerd() error {
	return testbed.RestartContainerd(framework.TB.Dir, io.Discard)
}

func (n node) Pods() ([]v1.Pod, error) { return n.a.Pods() }

// TestKill9AndContainerdRestartLeaveNothingBehind: two cycles of pods added, edited and
// removed, kill -9 of the agent at a random moment of each and a containerd restart in the
// second, then every manifest removed: no pod may have had two ready sandboxes or a
// container restarted, and nothing (leases, mounts, directories, veths, netns, nat rules,
// runc containers, shims) may be left.
func TestKill9AndContainerdRestartLeaveNothingBehind(t *testing.T) {
	a := framework.StartAgent(t, framework.AgentOptions{})
	bed, err := check.NewBed(framework.TB.Env, a.NodeName, a.RootDir, a.LogsDir, framework.TB.CRI)
	if err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d (go run ./test/chaos -seed %d -cycles 2 -containerd-every 2 makes the same choices)", seed, seed)
	w := workload.New(workload.Config{
		ManifestDir:     a.ManifestDir,
		NodeName:        a.NodeName,
		Image:           framework.TB.BusyboxImage,
		HostPort:        hostPort,
		Seed:            seed,
		ContainerdEvery: 2,
		Logf:            t.Logf,
	})
	report, err := w.Run(context.Background(), node{a}, bed, workload.RunOptions{Cycles: 2})
	t.Logf("counts:\n%s", report)
	if err != nil {
		t.Fatal(err)
	}
	if nz := report.NonZero(); len(nz) > 0 {
		t.Errorf("non-zero: %v", nz)
	}
}
