package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/utils"
	"github.com/containernetworking/cni/pkg/version"
)

// DefaultBridge is the bridge the generated network list uses when none is given. It is not
// cni0 on purpose: a node may also run another CNI setup (a system containerd, podman) whose
// bridge is cni0, and two IPAM stores handing out addresses on one bridge would collide.
const DefaultBridge = "nodeagent0"

// ConfigVersion is the CNI spec version of the generated network list. 1.1.0 is the first
// version with GC and STATUS, which the agent relies on to free leaked addresses after a crash.
const ConfigVersion = "1.1.0"

// ErrInvalidConfig classifies a network list that can never work as written (bad JSON, a
// missing field, an unsupported version). Fixing it needs a human, so retrying is pointless.
var ErrInvalidConfig = errors.New("invalid CNI network config")

// ErrPluginNotFound classifies a network list whose plugin binaries are not installed. It may
// heal on its own (a package being installed), so the agent keeps re-validating and reports the
// network as not ready meanwhile.
var ErrPluginNotFound = errors.New("CNI plugin not found")

// ConflistOptions are the optional knobs of DefaultConflist.
type ConflistOptions struct {
	// IPAMDataDir is where host-local keeps its address leases. Empty leaves host-local's own
	// default (/var/lib/cni/networks); a private test bed points it under its temp dir so it
	// never shares leases with the host.
	IPAMDataDir string
}

// DefaultConflist generates the node's network list: bridge (gateway, masquerade, hairpin) with
// host-local IPAM on podCIDR, then portmap (hostPort) and bandwidth (the ingress/egress
// annotations). podCIDR may hold one CIDR per address family separated by commas, the way a
// Node's spec.podCIDRs reads. bridge "" means DefaultBridge.
//
// loopback is not in the list: containerd's CRI plugin brings lo up in every pod netns itself.
func DefaultConflist(name, podCIDR, bridge string, opts ConflistOptions) ([]byte, error) {
	if err := utils.ValidateNetworkName(name); err != nil {
		return nil, fmt.Errorf("%w: network name %q: %s", ErrInvalidConfig, name, err.Msg)
	}
	if bridge == "" {
		bridge = DefaultBridge
	}
	if err := utils.ValidateInterfaceName(bridge); err != nil {
		return nil, fmt.Errorf("%w: bridge name %q: %s", ErrInvalidConfig, bridge, err.Msg)
	}
	subnets, err := parsePodCIDRs(podCIDR)
	if err != nil {
		return nil, err
	}

	// Structs rather than maps so the output has a stable, readable key order (the golden file
	// and the file users read under the CNI conf dir both depend on it).
	type ipRange struct {
		Subnet string `json:"subnet"`
	}
	type route struct {
		Dst string `json:"dst"`
	}
	type ipam struct {
		Type    string      `json:"type"`
		Ranges  [][]ipRange `json:"ranges"`
		Routes  []route     `json:"routes"`
		DataDir string      `json:"dataDir,omitempty"`
	}
	type plugin struct {
		Type         string          `json:"type"`
		Bridge       string          `json:"bridge,omitempty"`
		IsGateway    bool            `json:"isGateway,omitempty"`
		IPMasq       bool            `json:"ipMasq,omitempty"`
		HairpinMode  bool            `json:"hairpinMode,omitempty"`
		IPAM         *ipam           `json:"ipam,omitempty"`
		Capabilities map[string]bool `json:"capabilities,omitempty"`
		SNAT         *bool           `json:"snat,omitempty"`
	}
	type conflist struct {
		CNIVersion string   `json:"cniVersion"`
		Name       string   `json:"name"`
		Plugins    []plugin `json:"plugins"`
	}

	im := &ipam{Type: "host-local", DataDir: opts.IPAMDataDir}
	for _, s := range subnets {
		// One range set per family: host-local then gives the pod one address of each.
		im.Ranges = append(im.Ranges, []ipRange{{Subnet: s.String()}})
		dst := "0.0.0.0/0"
		if s.IP.To4() == nil {
			dst = "::/0"
		}
		im.Routes = append(im.Routes, route{Dst: dst})
	}
	// snat makes hostPort answer from 127.0.0.1 and from the pod's own host (hairpin through
	// the host address); without it only other machines could reach a hostPort.
	snat := true
	list := conflist{
		CNIVersion: ConfigVersion,
		Name:       name,
		Plugins: []plugin{
			{Type: "bridge", Bridge: bridge, IsGateway: true, IPMasq: true, HairpinMode: true, IPAM: im},
			{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}, SNAT: &snat},
			{Type: "bandwidth", Capabilities: map[string]bool{"bandwidth": true}},
		},
	}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode network list %q: %w", name, err)
	}
	return append(out, '\n'), nil
}

// parsePodCIDRs reads "10.88.0.0/16" or "10.88.0.0/16,fd00:88::/64". A CIDR with host bits
// set is refused rather than masked: it is almost always a typo for a different network, and
// silently using another range would hand out addresses the user did not mean.
func parsePodCIDRs(podCIDR string) ([]*net.IPNet, error) {
	if strings.TrimSpace(podCIDR) == "" {
		return nil, fmt.Errorf("%w: no pod CIDR given", ErrInvalidConfig)
	}
	var out []*net.IPNet
	seen := map[bool]bool{} // is IPv4 -> already have one
	for _, part := range strings.Split(podCIDR, ",") {
		part = strings.TrimSpace(part)
		ip, n, err := net.ParseCIDR(part)
		if err != nil {
			return nil, fmt.Errorf("%w: pod CIDR %q is not a CIDR", ErrInvalidConfig, part)
		}
		if !ip.Equal(n.IP) {
			return nil, fmt.Errorf("%w: pod CIDR %q has host bits set (the network is %s)", ErrInvalidConfig, part, n)
		}
		v4 := n.IP.To4() != nil
		if seen[v4] {
			return nil, fmt.Errorf("%w: pod CIDR %q: more than one range of the same address family", ErrInvalidConfig, podCIDR)
		}
		seen[v4] = true
		out = append(out, n)
	}
	return out, nil
}

// Network is a validated network list, ready for a Runner.
type Network struct {
	list    *libcni.NetworkConfigList
	binDirs []string
}

// Name is the network name; libcni keys its result cache by it.
func (n *Network) Name() string { return n.list.Name }

// CNIVersion is the spec version the list is run at.
func (n *Network) CNIVersion() string { return n.list.CNIVersion }

// Bytes is the list as loaded.
func (n *Network) Bytes() []byte { return n.list.Bytes }

// BinDirs are the directories plugin binaries are looked up in.
func (n *Network) BinDirs() []string { return slices.Clone(n.binDirs) }

// Capabilities lists the runtimeConfig capabilities some plugin of the list accepts
// (portMappings, bandwidth, ...), sorted. A capability no plugin accepts is dropped by libcni,
// so the agent can warn when a pod asks for a hostPort the list cannot honour.
func (n *Network) Capabilities() []string {
	var caps []string
	for _, p := range n.list.Plugins {
		for c, on := range p.Network.Capabilities {
			if on && !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	slices.Sort(caps)
	return caps
}

// LoadNetwork parses and validates a network list without running anything: the JSON, the
// structure, the spec version against what libcni implements, and that every plugin binary is
// installed in one of binDirs. It returns one error naming everything that is wrong in the
// first failing class (all missing binaries at once, IPAM plugins included, so a user installs
// them in one go), wrapped
// in ErrInvalidConfig or ErrPluginNotFound. Whether each plugin binary supports the version is
// checked by Runner.Validate, which has to execute them.
func LoadNetwork(conflistBytes []byte, binDirs []string) (*Network, error) {
	// libcni's own parse error drops the position; decode once ourselves to say where.
	var raw map[string]any
	if err := json.Unmarshal(conflistBytes, &raw); err != nil {
		return nil, fmt.Errorf("%w: bad JSON%s: %v", ErrInvalidConfig, jsonErrorPosition(conflistBytes, err), err)
	}
	if _, ok := raw["plugins"]; !ok {
		// libcni would accept this as a legacy single-plugin list and run nothing useful.
		return nil, fmt.Errorf("%w: no \"plugins\" list (a network list, .conflist, is required)", ErrInvalidConfig)
	}
	// libcni reports a typeless plugin without saying of which network; say it ourselves.
	name, _ := raw["name"].(string)
	if plugins, ok := raw["plugins"].([]any); ok {
		for i, p := range plugins {
			if m, ok := p.(map[string]any); ok {
				if typ, _ := m["type"].(string); typ == "" {
					return nil, fmt.Errorf("%w: network %q: plugin %d has no \"type\"", ErrInvalidConfig, name, i)
				}
			}
		}
	}
	list, err := libcni.NetworkConfFromBytes(conflistBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := utils.ValidateNetworkName(list.Name); err != nil {
		return nil, fmt.Errorf("%w: network name %q: %s", ErrInvalidConfig, list.Name, err.Msg)
	}
	if list.CNIVersion == "" {
		return nil, fmt.Errorf("%w: network %q has no cniVersion", ErrInvalidConfig, list.Name)
	}
	if !slices.Contains(version.All.SupportedVersions(), list.CNIVersion) {
		return nil, fmt.Errorf("%w: network %q: unsupported cniVersion %q (supported: %s)",
			ErrInvalidConfig, list.Name, list.CNIVersion, strings.Join(version.All.SupportedVersions(), ", "))
	}
	if len(binDirs) == 0 {
		return nil, fmt.Errorf("%w: no CNI plugin directories given", ErrInvalidConfig)
	}

	// IPAM plugins too: the main plugin execs them, and a missing host-local would otherwise
	// only show at the first pod's ADD.
	var missing []string
	for _, p := range list.Plugins {
		for _, typ := range []string{p.Network.Type, p.Network.IPAM.Type} {
			if typ == "" || slices.Contains(missing, typ) {
				continue
			}
			if _, err := invoke.FindInPath(typ, binDirs); err != nil {
				missing = append(missing, typ)
			}
		}
	}
	if len(missing) > 0 {
		noun := "binary"
		if len(missing) > 1 {
			noun = "binaries"
		}
		return nil, fmt.Errorf("%w: network %q: missing plugin %s %s in %s",
			ErrPluginNotFound, list.Name, noun, quoteAll(missing), strings.Join(binDirs, ":"))
	}
	return &Network{list: list, binDirs: slices.Clone(binDirs)}, nil
}

// jsonErrorPosition turns a decode error into " at line L, column C" when it has an offset.
func jsonErrorPosition(data []byte, err error) string {
	var offset int64
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	default:
		return ""
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:offset] {
		if b == '\n' {
			line++
			col = 1
			continue
		}
		col++
	}
	// The offset points just past the offending byte.
	if col > 1 {
		col--
	}
	return fmt.Sprintf(" at line %d, column %d", line, col)
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}
