package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitFile = "../../deploy/nodeagent.service"

// parseUnit reads a systemd unit into section -> key -> values (a key may repeat).
// Continuation lines are not used in our unit and are rejected.
func parseUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not expected", path, n)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, line)
			}
			k = strings.TrimSpace(k)
			out[section][k] = append(out[section][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnitHasTheSettingsTheAgentRelies(t *testing.T) {
	u := parseUnit(t, unitFile)
	for _, tc := range []struct {
		section, key, want string
		why                string
	}{
		{"Service", "Type", "notify", "READY=1 marks the agent started (systemd.go)"},
		{"Service", "NotifyAccess", "main", "only the agent, not the plugins it runs, may notify"},
		{"Service", "Restart", "always", "a node without its agent starts no pods"},
		{"Service", "KillMode", "process", "stopping the agent never stops pods"},
		{"Service", "ExecStart", "/usr/local/bin/nodeagent --config /etc/nodeagent/config.yaml", "install.sh puts the binary and config there"},
		{"Unit", "After", "containerd.service", "start after the runtime"},
		{"Unit", "Wants", "containerd.service", "pull the runtime in"},
		{"Install", "WantedBy", "multi-user.target", "systemctl enable"},
	} {
		t.Run(tc.section+"/"+tc.key, func(t *testing.T) {
			got := u[tc.section][tc.key]
			found := false
			for _, v := range got {
				for _, f := range strings.Fields(v) {
					found = found || f == tc.want
				}
				found = found || v == tc.want
			}
			if !found {
				t.Fatalf("[%s] %s = %q, want %q (%s)", tc.section, tc.key, got, tc.want, tc.why)
			}
		})
	}
	wd := u["Service"]["WatchdogSec"]
	if len(wd) != 1 || wd[0] == "" || wd[0] == "0" || wd[0] == "infinity" {
		t.Fatalf("WatchdogSec = %q: the watchdog must be on, so a wedged sync loop is restarted", wd)
	}
	if s := u["Service"]["TimeoutStopSec"]; len(s) != 1 || s[0] == "infinity" {
		t.Fatalf("TimeoutStopSec = %q: a stop must be bounded", s)
	}
}

// TestUnitVerifies runs systemd's own checker on the unit. verify needs ExecStart's binary to
// exist, so a copy points at the test binary; it only warns (exit 0) on unknown keys and bad
// values, so any line about the unit fails the test.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the unit's settings are still checked by TestUnitHasTheSettingsTheAgentRelies")
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(data), "/usr/local/bin/nodeagent ", self+" ")
	path := filepath.Join(t.TempDir(), "nodeagent.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "nodeagent.service") {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 {
		t.Fatalf("systemd-analyze verify found problems in the unit:\n%s", strings.Join(problems, "\n"))
	}
}

func TestDefaultConfigFileLoads(t *testing.T) {
	cfg, err := loadConfig([]string{"--config", "../../deploy/config.yaml", "--node-name", "n1"})
	if err != nil {
		t.Fatalf("deploy/config.yaml: %v", err)
	}
	if cfg.PodManifestPath != "/etc/nodeagent/manifests" {
		t.Fatalf("pod-manifest-path = %q, want the directory install.sh creates", cfg.PodManifestPath)
	}
}

// installEnv runs deploy/install.sh into a temp root with a fake containerd (answering
// version) and a fake systemctl (recording its arguments) first in PATH, so the real system
// is never touched.
type installEnv struct {
	root, bins, calls string
	env               []string
}

func newInstallEnv(t *testing.T, containerdVersion string) *installEnv {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	base := t.TempDir()
	e := &installEnv{root: filepath.Join(base, "root"), bins: filepath.Join(base, "bin"), calls: filepath.Join(base, "systemctl.calls")}
	fakes := filepath.Join(base, "fakes")
	for _, d := range []string{e.bins, fakes} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for path, body := range map[string]string{
		filepath.Join(e.bins, "nodeagent"):     "#!/bin/sh\necho agent\n",
		filepath.Join(e.bins, "nodeagent-cni"): "#!/bin/sh\necho delegate\n",
		filepath.Join(fakes, "systemctl"):      "#!/bin/sh\necho \"$*\" >>" + e.calls + "\n",
		filepath.Join(fakes, "containerd"):     "#!/bin/sh\n[ -n \"" + containerdVersion + "\" ] || exit 1\necho containerd github.com/containerd/containerd " + containerdVersion + " abc123\n",
	} {
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.env = append(os.Environ(), "PATH="+fakes+":"+os.Getenv("PATH"), "CONTAINERD="+filepath.Join(fakes, "containerd"),
		"PREFIX=", "CNI_BIN_DIR=", "CNI_CONF_DIR=")
	return e
}

func (e *installEnv) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"../../deploy/install.sh", "--root", e.root, "--bin-dir", e.bins}, args...)...)
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (e *installEnv) read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *installEnv) write(t *testing.T, path, content string) {
	t.Helper()
	p := filepath.Join(e.root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *installEnv) exists(path string) bool {
	_, err := os.Lstat(filepath.Join(e.root, path))
	return err == nil
}

func TestInstallIntoAFreshRoot(t *testing.T) {
	e := newInstallEnv(t, "v2.4.2")
	out := e.run(t)

	if got := e.read(t, "usr/local/bin/nodeagent"); got != "#!/bin/sh\necho agent\n" {
		t.Fatalf("installed binary = %q", got)
	}
	if st, err := os.Stat(filepath.Join(e.root, "usr/local/bin/nodeagent")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("binary mode: %v %v", st, err)
	}
	unit, _ := os.ReadFile(unitFile)
	if got := e.read(t, "etc/systemd/system/nodeagent.service"); got != string(unit) {
		t.Fatal("the installed unit differs from deploy/nodeagent.service")
	}
	def, _ := os.ReadFile("../../deploy/config.yaml")
	if got := e.read(t, "etc/nodeagent/config.yaml"); got != string(def) {
		t.Fatal("the installed config differs from deploy/config.yaml")
	}
	if st, err := os.Stat(filepath.Join(e.root, "etc/nodeagent/config.yaml")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode: %v %v (it may name credentials: root only)", st, err)
	}
	if st, err := os.Stat(filepath.Join(e.root, "etc/nodeagent/manifests")); err != nil || !st.IsDir() {
		t.Fatalf("manifest dir: %v", err)
	}
	if link, err := os.Readlink(filepath.Join(e.root, "opt/cni/bin/nodeagent")); err != nil || link != "/usr/local/bin/nodeagent-cni" {
		t.Fatalf("CNI delegate link = %q, %v; want the path the installed system sees", link, err)
	}
	if !e.exists("etc/cni/net.d/05-nodeagent.conflist") || !e.exists("usr/local/bin/nodeagent-cni") {
		t.Fatal("the CNI delegate or its network config is missing")
	}
	// No containerd config: a minimal one that only adds the import, and the drop-in.
	if got := e.read(t, "etc/containerd/config.toml"); !strings.Contains(got, `imports = ["/etc/containerd/conf.d/*.toml"]`) {
		t.Fatalf("containerd config.toml = %q", got)
	}
	dropin := e.read(t, "etc/containerd/conf.d/nodeagent.toml")
	for _, want := range []string{"[plugins.'io.containerd.cri.v1.runtime'.cni]", "bin_dirs = ['/opt/cni/bin']", "conf_dir = '/etc/cni/net.d'", "max_conf_num = 1"} {
		if !strings.Contains(dropin, want) {
			t.Fatalf("drop-in lacks %q:\n%s", want, dropin)
		}
	}
	// A root is installed offline: enabled through systemctl --root, never started.
	if calls := e.read(t, "../systemctl.calls"); calls != "--root="+e.root+" enable nodeagent.service\n" {
		t.Fatalf("systemctl calls = %q", calls)
	}
	if !strings.Contains(out, "restart containerd") {
		t.Fatalf("no hint to restart containerd after writing its drop-in:\n%s", out)
	}
}

func TestReinstallKeepsTheUsersConfig(t *testing.T) {
	e := newInstallEnv(t, "v2.4.2")
	e.run(t, "--no-start")
	e.write(t, "etc/nodeagent/config.yaml", "kubeconfig: /etc/nodeagent/kubeconfig\n")
	out := e.run(t, "--no-start")
	if got := e.read(t, "etc/nodeagent/config.yaml"); got != "kubeconfig: /etc/nodeagent/kubeconfig\n" {
		t.Fatalf("the user's config was replaced: %q", got)
	}
	if !strings.Contains(out, "exists: kept") {
		t.Fatalf("the output does not say the config was kept:\n%s", out)
	}
	if e.exists("../systemctl.calls") {
		t.Fatalf("--no-start ran systemctl: %q", e.read(t, "../systemctl.calls"))
	}
}

func TestInstallNeverEditsAContainerdConfig(t *testing.T) {
	for _, tc := range []struct {
		name, version, config, says string
	}{
		{"2.x without imports", "v2.1.0", "version = 3\n[plugins.'io.containerd.cri.v1.runtime']\n  enable_selinux = true\n", "does not import"},
		{"2.x that sets CNI paths", "v2.4.2", "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n[plugins.'io.containerd.cri.v1.runtime'.cni]\n  bin_dirs = ['/usr/lib/cni']\n", "sets CNI paths already"},
		{"1.7", "v1.7.24", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"\n", "containerd 1.x"},
		{"unknown version", "", "version = 2\n", "version unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newInstallEnv(t, tc.version)
			e.write(t, "etc/containerd/config.toml", tc.config)
			out := e.run(t, "--no-start")
			if got := e.read(t, "etc/containerd/config.toml"); got != tc.config {
				t.Fatalf("config.toml was changed:\n%s", got)
			}
			if e.exists("etc/containerd/conf.d/nodeagent.toml") {
				t.Fatalf("a drop-in was written:\n%s", e.read(t, "etc/containerd/conf.d/nodeagent.toml"))
			}
			if !strings.Contains(out, tc.says) || !strings.Contains(out, "/etc/cni/net.d") {
				t.Fatalf("the output does not say what to add (%q):\n%s", tc.says, out)
			}
		})
	}
}

func TestInstallWritesTheDropInWhereContainerdImportsIt(t *testing.T) {
	e := newInstallEnv(t, "v2.4.2")
	cfg := "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'pause:3.10'\n"
	e.write(t, "etc/containerd/config.toml", cfg)
	e.run(t, "--no-start")
	if got := e.read(t, "etc/containerd/config.toml"); got != cfg {
		t.Fatalf("config.toml was changed:\n%s", got)
	}
	if !strings.Contains(e.read(t, "etc/containerd/conf.d/nodeagent.toml"), "conf_dir = '/etc/cni/net.d'") {
		t.Fatal("no drop-in although config.toml imports conf.d")
	}
}
