package network

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeBinDir makes a plugin directory holding empty executables with the given names; LoadNetwork
// only looks for them.
func fakeBinDir(t *testing.T, plugins ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range plugins {
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDefaultConflistMatchesGolden(t *testing.T) {
	for _, tc := range []struct {
		name, podCIDR, bridge string
		opts                  ConflistOptions
		golden                string
	}{
		{name: "nodeagent", podCIDR: "10.88.0.0/16", golden: "default-ipv4.conflist"},
		{
			name: "nodeagent", podCIDR: "10.88.0.0/16, fd00:88::/64", bridge: "na-test1",
			opts: ConflistOptions{IPAMDataDir: "/var/lib/nodeagent/cni/networks"}, golden: "dual-stack.conflist",
		},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := DefaultConflist(tc.name, tc.podCIDR, tc.bridge, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("generated conflist differs from %s:\n%s", path, got)
			}
		})
	}
}

func TestDefaultConflistLoadsWithTheStandardPlugins(t *testing.T) {
	b, err := DefaultConflist("nodeagent", "10.88.0.0/16", "", ConflistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := LoadNetwork(b, []string{fakeBinDir(t, "bridge", "host-local", "portmap", "bandwidth")})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "nodeagent" || n.CNIVersion() != "1.1.0" {
		t.Errorf("name %q version %q", n.Name(), n.CNIVersion())
	}
	if got := strings.Join(n.Capabilities(), ","); got != "bandwidth,portMappings" {
		t.Errorf("capabilities %s", got)
	}
}

func TestDefaultConflistRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, netName, podCIDR, bridge, want string
	}{
		{"no CIDR", "n", "", "", "invalid CNI network config: no pod CIDR given"},
		{"not a CIDR", "n", "10.88.0.0", "", `invalid CNI network config: pod CIDR "10.88.0.0" is not a CIDR`},
		{"host bits", "n", "10.88.0.1/16", "", `invalid CNI network config: pod CIDR "10.88.0.1/16" has host bits set (the network is 10.88.0.0/16)`},
		{"two IPv4 ranges", "n", "10.88.0.0/16,10.89.0.0/16", "", `invalid CNI network config: pod CIDR "10.88.0.0/16,10.89.0.0/16": more than one range of the same address family`},
		{"bad network name", "a b", "10.88.0.0/16", "", `invalid CNI network config: network name "a b": invalid characters found in network name`},
		{"bridge name too long", "n", "10.88.0.0/16", "a-very-long-bridge", `invalid CNI network config: bridge name "a-very-long-bridge": interface name is too long`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DefaultConflist(tc.netName, tc.podCIDR, tc.bridge, ConflistOptions{})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got error %v, want %s", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("not ErrInvalidConfig: %v", err)
			}
		})
	}
}

func TestLoadNetworkNamesWhatIsWrong(t *testing.T) {
	all := fakeBinDir(t, "bridge", "host-local", "portmap", "bandwidth")
	onlyBridge := fakeBinDir(t, "bridge")
	const good = `{"cniVersion":"1.1.0","name":"n","plugins":[
  {"type":"bridge","ipam":{"type":"host-local"}},
  {"type":"portmap","capabilities":{"portMappings":true}},
  {"type":"bandwidth"}]}`
	for _, tc := range []struct {
		name    string
		conf    string
		dirs    []string
		want    string
		wantErr error
	}{
		{"valid", good, []string{all}, "", nil},
		{"found in a later dir", good, []string{onlyBridge, all}, "", nil},
		{
			"missing binaries, IPAM included, all named at once", good, []string{onlyBridge},
			`CNI plugin not found: network "n": missing plugin binaries "host-local", "portmap", "bandwidth" in ` + onlyBridge, ErrPluginNotFound,
		},
		{
			"one missing binary in two dirs", strings.Replace(good, `"bandwidth"`, `"tuning"`, 1), []string{onlyBridge, all},
			`CNI plugin not found: network "n": missing plugin binary "tuning" in ` + onlyBridge + ":" + all, ErrPluginNotFound,
		},
		{
			"bad JSON with its position", "{\"cniVersion\":\"1.1.0\",\n  \"name\": \"n\",,\n}", []string{all},
			`invalid CNI network config: bad JSON at line 2, column 15: invalid character ',' looking for beginning of object key string`, ErrInvalidConfig,
		},
		{
			"unsupported version", strings.Replace(good, "1.1.0", "2.0.0", 1), []string{all},
			`invalid CNI network config: network "n": unsupported cniVersion "2.0.0" (supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)`, ErrInvalidConfig,
		},
		{
			"no version", strings.Replace(good, `"cniVersion":"1.1.0",`, "", 1), []string{all},
			`invalid CNI network config: network "n" has no cniVersion`, ErrInvalidConfig,
		},
		{
			"single plugin conf instead of a list", `{"cniVersion":"1.1.0","name":"n","type":"bridge"}`, []string{all},
			`invalid CNI network config: no "plugins" list (a network list, .conflist, is required)`, ErrInvalidConfig,
		},
		{
			"empty plugin list", `{"cniVersion":"1.1.0","name":"n","plugins":[]}`, []string{all},
			`invalid CNI network config: error parsing configuration list: no plugins in list`, ErrInvalidConfig,
		},
		{
			"plugin without type", `{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"},{"mtu":1}]}`, []string{all},
			`invalid CNI network config: network "n": plugin 1 has no "type"`, ErrInvalidConfig,
		},
		{
			"no plugin dirs", good, nil,
			`invalid CNI network config: no CNI plugin directories given`, ErrInvalidConfig,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := LoadNetwork([]byte(tc.conf), tc.dirs)
			if tc.want == "" {
				if err != nil || n == nil {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got error\n  %v\nwant\n  %s", err, tc.want)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error is not %v", tc.wantErr)
			}
		})
	}
}
