package framework

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// Testbed is the package's running test bed.
type Testbed struct {
	*testbed.Env
	CRI *cri.Client
}

// TB is the package's test bed, set by Main.
var TB *Testbed

// RepoRoot is the checkout under test.
func RepoRoot() string { return testbed.RepoRoot() }

// Main brings a test bed up, runs the package's tests, and tears it down whatever they did.
// index (0..15) must be unique per e2e package. Without root, every test is skipped.
func Main(m *testing.M, index int) {
	os.Exit(runMain(m, index, nil))
}

// MainWith is Main with more to set up once the test bed is up (a control plane); setup
// returns what tears it down.
func MainWith(m *testing.M, index int, setup func() (teardown func(), err error)) {
	os.Exit(runMain(m, index, setup))
}

func runMain(m *testing.M, index int, setup func() (func(), error)) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: skipped, needs root (it runs containerd, mounts and network namespaces)")
		return 0
	}
	dir := fmt.Sprintf("/tmp/nodeagent-e2e-%d", index)
	defer func() {
		if err := testbed.Down(dir, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		}
	}()
	env, err := testbed.Up(context.Background(), dir, index, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	client, err := cri.New(env.RuntimeEndpoint, cri.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer client.Close()
	TB = &Testbed{Env: env, CRI: client}
	if setup != nil {
		teardown, err := setup()
		if teardown != nil {
			defer teardown()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// RestartContainerd stops the test bed's containerd and starts it again on the same state;
// running containers (their shims) live on, as on a node where containerd is upgraded.
func RestartContainerd(t *testing.T) {
	t.Helper()
	if err := testbed.RestartContainerd(TB.Dir, io.Discard); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
}

// AgentNetworkConfig is the config-file part that puts an agent named node on the test bed's
// pod network: the delegate finds it in the shared socket dir, and all agents share the
// network's state, as every CNI user of one node does.
func (tb *Testbed) AgentNetworkConfig(node string) string {
	v := tb.Values
	return fmt.Sprintf("pod-cidr: %s\ncni-bridge: %s\ncni-network-name: %s\ncni-bin-dir: [%s]\ncni-state-dir: %s\ncni-socket: %s\n",
		v["POD_SUBNET"], v["CNI_BRIDGE"], v["CNI_NETWORK_NAME"], v["CNI_BIN_DIR"], v["CNI_STATE_DIR"],
		filepath.Join(v["CNI_SOCKET_DIR"], node+".sock"))
}
