package check

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/test/testbed"
)

// Bed says where one agent on one test bed keeps what the checks look at.
type Bed struct {
	Dir        string // the test bed's directory (hack/testbed.sh up DIR)
	Node       string // the agent's node name, its sandboxes' cri.LabelNodeName
	RootDir    string // the agent's --root-dir
	PodLogsDir string // the agent's --pod-logs-dir

	NetworkName string     // the CNI network: host-local's data dir and the nat comments name it
	Bridge      string     // the bridge the pods' host veths are ports of
	Subnet      *net.IPNet // the pod subnet, unique to the test bed
	CNIStateDir string     // the agent's --cni-state-dir: result cache and leases

	// ContainerdSocket is the address every shim of this containerd is started with.
	ContainerdSocket string
	// ContainerdLog is containerd's log: every sandbox ID it ever handled is in it, so a nat
	// chain named after a sandbox that came and went between two looks is still attributed.
	ContainerdLog string

	CRI Runtime
}

// Runtime is the part of the CRI client the checks call.
type Runtime interface {
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error)
	ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error)
}

var _ Runtime = (*cri.Client)(nil)

// NewBed describes the agent named node, with its root and pod log directories, on the test
// bed env.
func NewBed(env *testbed.Env, node, rootDir, podLogsDir string, client Runtime) (*Bed, error) {
	v := env.Values
	_, subnet, err := net.ParseCIDR(v["POD_SUBNET"])
	if err != nil {
		return nil, fmt.Errorf("test bed POD_SUBNET: %w", err)
	}
	b := &Bed{
		Dir:              env.Dir,
		Node:             node,
		RootDir:          rootDir,
		PodLogsDir:       podLogsDir,
		NetworkName:      v["CNI_NETWORK_NAME"],
		Bridge:           v["CNI_BRIDGE"],
		Subnet:           subnet,
		CNIStateDir:      v["CNI_STATE_DIR"],
		ContainerdSocket: strings.TrimPrefix(env.RuntimeEndpoint, "unix://"),
		ContainerdLog:    v["CONTAINERD_LOG"],
		CRI:              client,
	}
	for k, val := range map[string]string{"CNI_NETWORK_NAME": b.NetworkName, "CNI_BRIDGE": b.Bridge, "CNI_STATE_DIR": b.CNIStateDir} {
		if val == "" {
			return nil, fmt.Errorf("test bed env lacks %s", k)
		}
	}
	return b, nil
}

// leaseDir is where host-local keeps this network's leases: the agent generates its list with
// dataDir <cni-state-dir>/networks, and host-local adds the network name.
func (b *Bed) leaseDir() string { return filepath.Join(b.CNIStateDir, "networks", b.NetworkName) }

// resultCacheDir is libcni's result cache: one file per attachment, <network>-<id>-<ifname>.
func (b *Bed) resultCacheDir() string { return filepath.Join(b.CNIStateDir, "cache", "results") }

// runcRoot holds one runc root per containerd namespace (the runtime's Root option).
func (b *Bed) runcRoot() string { return filepath.Join(b.Dir, "runc") }

// containerdLog reads the bed's containerd log; nil when there is none.
func (b *Bed) containerdLog() []byte {
	if b.ContainerdLog == "" {
		return nil
	}
	data, err := os.ReadFile(b.ContainerdLog)
	if err != nil {
		return nil
	}
	return data
}
