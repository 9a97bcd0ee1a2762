package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagWinsOverFileWinsOverDefault(t *testing.T) {
	file := writeConfig(t, "node-name: from-file\nlog-level: debug\npod-manifest-path: /etc/manifests\n")
	cfg, err := loadConfig([]string{"--config", file, "--node-name", "from-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "from-flag" {
		t.Errorf("node-name = %q, the flag must win", cfg.NodeName)
	}
	if cfg.LogLevel != "debug" || cfg.PodManifestPath != "/etc/manifests" {
		t.Errorf("file values not applied: %+v", cfg)
	}
	if cfg.RootDir != "/var/lib/nodeagent" || cfg.DebugAddress != "127.0.0.1:10248" {
		t.Errorf("defaults lost: %+v", cfg)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		args    []string
		wantErr string
	}{
		{"unknown key in file", "node-nme: x\n", nil, `unknown key "node-nme"`},
		{"bad level in file", "log-level: loud\n", nil, `log-level: "loud"`},
		{"bad format flag", "", []string{"--log-format", "xml"}, `log-format: "xml"`},
		{"relative root dir", "root-dir: var/lib\n", nil, `root-dir: "var/lib"`},
		{"list where a value belongs", "node-name: [a, b]\n", nil, `key "node-name": want a single value`},
		{"bad debug address", "debug-address: nope\n", nil, `debug-address: "nope"`},
		{"public debug address", "debug-address: 0.0.0.0:10248\n", nil, `debug-address: "0.0.0.0:10248" is not a loopback address`},
		{"bad node ip", "node-ip: 10.0.0\n", nil, `node-ip: "10.0.0"`},
		{"unknown flag", "", []string{"--no-such-flag"}, `unknown flag: --no-such-flag`},
		{"not yaml", "a: [\n", nil, "not valid YAML"},
		{"bad duration", "relist-period: soon\n", nil, `key "relist-period"`},
		{"zero backoff", "restart-backoff-initial: 0s\n", nil, "restart-backoff-initial: 0s must be positive"},
		{"cap below initial", "restart-backoff-initial: 1m\nrestart-backoff-max: 10s\n", nil, "restart-backoff-max: 10s is less than"},
		{"bad events mode", "runtime-events: polling\n", nil, "runtime-events:"},
		{"relative cni bin dir", "cni-bin-dir: [/opt/cni/bin, plugins]\n", nil, `cni-bin-dir: "plugins"`},
		{"zero gc period", "cni-gc-period: 0s\n", nil, "cni-gc-period: 0s must be positive"},
		{"relative cni socket", "", []string{"--cni-socket", "cni.sock"}, `cni-socket: "cni.sock"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeConfig(t, tc.file)}, args...)
			}
			_, err := loadConfig(args)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestDurationsFromFileAndFlags(t *testing.T) {
	file := writeConfig(t, "relist-period: 45s\nrestart-backoff-initial: 1s\n")
	cfg, err := loadConfig([]string{"--config", file, "--restart-backoff-max", "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RelistPeriod != 45*time.Second || cfg.RestartBackoffInitial != time.Second || cfg.RestartBackoffMax != 2*time.Second || cfg.RestartBackoffReset != 10*time.Minute {
		t.Fatalf("durations = %v %v %v %v", cfg.RelistPeriod, cfg.RestartBackoffInitial, cfg.RestartBackoffMax, cfg.RestartBackoffReset)
	}
}

func TestConfigFileNumbersAndBooleansBecomeValues(t *testing.T) {
	file := writeConfig(t, "node-name: 42\n")
	cfg, err := loadConfig([]string{"--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "42" {
		t.Fatalf("node-name = %q", cfg.NodeName)
	}
}

func TestCNIKeysFromFile(t *testing.T) {
	file := writeConfig(t, "root-dir: /srv/na\ncni-bin-dir: [/opt/cni/bin, /usr/lib/cni]\npod-cidr: 10.1.0.0/24\ncni-check-period: 0s\n")
	cfg, err := loadConfig([]string{"--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.CNIBinDirs, ":") != "/opt/cni/bin:/usr/lib/cni" || cfg.PodCIDR != "10.1.0.0/24" ||
		cfg.CNICheckPeriod != 0 || cfg.CNIStateDir != "/srv/na/cni" || cfg.CNISocket != "/run/nodeagent/cni.sock" {
		t.Fatalf("cni config: %+v", cfg)
	}
}

func TestKubeKeysFromFile(t *testing.T) {
	file := writeConfig(t, "kubeconfig: /etc/nodeagent/kubeconfig\nnode-labels: {zone: a, tier: edge}\nsystem-reserved: {cpu: 100m, memory: 256Mi}\nregister-with-taints: [dedicated=edge:NoSchedule]\n")
	cfg, err := loadConfig([]string{"--config", file})
	if err != nil {
		t.Fatal(err)
	}
	taints, _ := cfg.taints()
	if cfg.Kubeconfig != "/etc/nodeagent/kubeconfig" || cfg.NodeLabels["zone"] != "a" || cfg.NodeLabels["tier"] != "edge" ||
		cfg.SystemReserved["memory"] != "256Mi" || len(taints) != 1 || taints[0].Key != "dedicated" || taints[0].Effect != "NoSchedule" {
		t.Fatalf("kube config: %+v, taints %v", cfg, taints)
	}
	for _, tc := range []struct{ file, want string }{
		{"register-with-taints: [a=b:Sometimes]\n", `effect "Sometimes"`},
		{"system-reserved: {gpu: 1}\n", `system-reserved: unknown resource "gpu"`},
		{"kube-reserved: {memory: lots}\n", `kube-reserved: memory="lots"`},
		{"max-pods: 0\n", "max-pods: 0 must be positive"},
	} {
		if _, err := loadConfig([]string{"--config", writeConfig(t, tc.file)}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.file, err, tc.want)
		}
	}
}

func TestNonLoopbackDebugAddressNeedsATokenFile(t *testing.T) {
	if _, err := loadConfig([]string{"--debug-address", "0.0.0.0:10248"}); err == nil || !strings.Contains(err.Error(), "needs --debug-token-file") {
		t.Fatalf("err = %v", err)
	}
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "token"), filepath.Join(dir, "empty")
	if err := os.WriteFile(good, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--debug-address", "0.0.0.0:10248", "--debug-token-file", good})
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := cfg.debugToken(); tok != "s3cret" {
		t.Fatalf("token %q", tok)
	}
	if _, err := loadConfig([]string{"--debug-token-file", empty}); err == nil || !strings.Contains(err.Error(), "must hold one token") {
		t.Fatalf("empty token file: %v", err)
	}
}
