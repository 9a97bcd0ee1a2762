package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// startAgent serves handler on a socket in a temp dir until the test ends.
func startAgent(t *testing.T, handler DelegateHandler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := ListenDelegate(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeDelegate(ctx, l, handler) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeDelegate: %v", err)
		}
	})
	return path
}

// containerdConf is the shape of what containerd passes the delegate: its config plus the
// runtimeConfig it computed for the pod.
const containerdConf = `{"cniVersion":"1.0.0","name":"nodeagent-delegate","type":"nodeagent",
 "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""}],
  "bandwidth":{"ingressRate":1000000,"ingressBurst":4294967295}}}`

func delegateEnv(command string) []string {
	return []string{
		"PATH=/usr/bin",
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=c1",
		"CNI_NETNS=/var/run/netns/cni-1",
		"CNI_IFNAME=eth0",
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u1",
		"CNI_PATH=/opt/cni/bin",
	}
}

// runDelegate runs the delegate with conf, pointed at socket the way containerd's conflist
// would point it.
func runDelegate(env []string, conf, socket string) (int, string) {
	var m map[string]any
	if err := json.Unmarshal([]byte(conf), &m); err == nil {
		m["socket"] = socket
		b, _ := json.Marshal(m)
		conf = string(b)
	}
	var out bytes.Buffer
	code := RunDelegate(env, strings.NewReader(conf), &out)
	return code, out.String()
}

func TestDelegateRoundTrip(t *testing.T) {
	var mu sync.Mutex
	var got Request
	const result = `{"cniVersion":"1.0.0","ips":[{"address":"10.88.0.2/16"}]}`
	socket := startAgent(t, func(_ context.Context, req Request) ([]byte, error) {
		mu.Lock()
		got = req
		mu.Unlock()
		return []byte(result), nil
	})

	code, out := runDelegate(delegateEnv("ADD"), containerdConf, socket)
	if code != 0 || out != result+"\n" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Command != "ADD" || got.ContainerID != "c1" || got.NetNS != "/var/run/netns/cni-1" ||
		got.IfName != "eth0" || got.Path != "/opt/cni/bin" || !strings.Contains(got.Args, "K8S_POD_UID=u1") {
		t.Errorf("agent got %+v", got)
	}

	a, err := AttachmentFromRequest(got)
	if err != nil {
		t.Fatal(err)
	}
	want := Attachment{
		ContainerID: "c1", NetNS: "/var/run/netns/cni-1", IfName: "eth0",
		PodName: "web", PodNamespace: "default", PodUID: "u1",
		PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		Bandwidth:    &Bandwidth{IngressRate: 1000000, IngressBurst: 4294967295},
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("attachment\n  %+v\nwant\n  %+v", a, want)
	}
	if v := RequestCNIVersion(got); v != "1.0.0" {
		t.Errorf("request cniVersion %q", v)
	}

	// DEL prints nothing on success.
	if code, out := runDelegate(delegateEnv("DEL"), containerdConf, startAgent(t, func(context.Context, Request) ([]byte, error) { return nil, nil })); code != 0 || out != "" {
		t.Errorf("DEL: exit %d, stdout %q", code, out)
	}
}

func TestDelegatePrintsTheAgentsError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{
			"CNI error keeps its code", errors.Join(errors.New("CNI ADD failed"), types.NewError(types.ErrInvalidNetworkConfig, "bad", "why")),
			`{"cniVersion":"1.0.0","code":7,"msg":"CNI ADD failed\nbad; why","details":"why"}` + "\n",
		},
		{
			"other error is internal", errors.New("network not ready"),
			`{"cniVersion":"1.0.0","code":999,"msg":"network not ready"}` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			socket := startAgent(t, func(context.Context, Request) ([]byte, error) { return nil, tc.err })
			code, out := runDelegate(delegateEnv("ADD"), containerdConf, socket)
			if code != 1 || out != tc.want {
				t.Errorf("exit %d, stdout\n  %s\nwant\n  %s", code, out, tc.want)
			}
		})
	}
}

func TestDelegateWithTheAgentUnreachable(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "agent.sock")
	for _, tc := range []struct {
		command string
		code    int
	}{
		{"ADD", 11},
		{"CHECK", 11},
		{"STATUS", 50},
	} {
		t.Run(tc.command, func(t *testing.T) {
			code, out := runDelegate(delegateEnv(tc.command), containerdConf, socket)
			want := `{"cniVersion":"1.0.0","code":` + map[int]string{11: "11", 50: "50"}[tc.code] +
				`,"msg":"nodeagent is not reachable: dial unix ` + socket +
				`: connect: no such file or directory"}` + "\n"
			if code != 1 || out != want {
				t.Errorf("exit %d, stdout\n  %s\nwant\n  %s", code, out, want)
			}
		})
	}
}

// scriptPlugins writes shell-script plugins that append "<plugin> <command> <container>
// <netns>" to log and succeed with no output, which is all a DEL prints.
func scriptPlugins(t *testing.T, log string, plugins ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range plugins {
		script := "#!/bin/sh\ncat >/dev/null\necho \"" + p + " $CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS\" >> " + log + "\n"
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDelegateRunsDELItselfWhenTheAgentIsDown(t *testing.T) {
	state := t.TempDir()
	log := filepath.Join(t.TempDir(), "calls")
	conf, err := DefaultConflist("nodeagent", "10.88.0.0/16", "", ConflistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := LoadNetwork(conf, []string{scriptPlugins(t, log, "bridge", "host-local", "portmap", "bandwidth")})
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveNetwork(state, n); err != nil {
		t.Fatal(err)
	}

	stdin := strings.Replace(containerdConf, `"type":"nodeagent",`, `"type":"nodeagent","stateDir":"`+state+`",`, 1)
	var out bytes.Buffer
	env := append(delegateEnv("DEL"), "CNI_NETNS=") // the netns is gone: release state only
	code := runDelegateWith(env, strings.NewReader(stdin), &out, RunnerOptions{Commands: newFakeIptables()})
	if code != 0 || out.String() != "" {
		t.Fatalf("DEL without the agent: exit %d, stdout %q", code, out.String())
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if want := "bandwidth DEL c1 \nportmap DEL c1 \nbridge DEL c1 \n"; string(calls) != want {
		t.Errorf("plugin calls:\n%s\nwant:\n%s", calls, want)
	}

	// A state dir the agent never used has nothing to release.
	out.Reset()
	stdin = strings.Replace(containerdConf, `"type":"nodeagent",`, `"type":"nodeagent","stateDir":"`+t.TempDir()+`",`, 1)
	if code := runDelegateWith(delegateEnv("DEL"), strings.NewReader(stdin), &out, RunnerOptions{Commands: newFakeIptables()}); code != 0 {
		t.Errorf("DEL with an unused state dir: exit %d, stdout %q", code, out.String())
	}
}

func TestDelegateTriesEveryAgentSocketInTheDir(t *testing.T) {
	dir := t.TempDir()
	// A stale socket file whose agent is gone sorts first.
	stale := filepath.Join(dir, "a.sock")
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := ListenDelegate(filepath.Join(dir, "b.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = ServeDelegate(ctx, l, func(context.Context, Request) ([]byte, error) { return []byte(`{"ok":1}`), nil })
	}()

	stdin := strings.Replace(containerdConf, `"type":"nodeagent",`, `"type":"nodeagent","socketDir":"`+dir+`",`, 1)
	var out bytes.Buffer
	if code := RunDelegate(delegateEnv("ADD"), strings.NewReader(stdin), &out); code != 0 || out.String() != "{\"ok\":1}\n" {
		t.Errorf("exit %d, stdout %q", code, out.String())
	}
}

func TestDelegateAnswersVersionWithoutTheAgent(t *testing.T) {
	code, out := runDelegate([]string{"CNI_COMMAND=VERSION"}, `{"cniVersion":"1.0.0"}`, filepath.Join(t.TempDir(), "none.sock"))
	want := `{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`
	if code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("exit %d, stdout %q, want %s", code, out, want)
	}
}

func TestDelegateRejectsABadEnvironmentLocally(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		name  string
		env   []string
		stdin string
		want  string
	}{
		{"no command", nil, containerdConf, `{"cniVersion":"1.0.0","code":4,"msg":"CNI_COMMAND is not set"}`},
		{"unknown command", []string{"CNI_COMMAND=FROB"}, containerdConf, `{"cniVersion":"1.0.0","code":4,"msg":"unknown CNI_COMMAND \"FROB\""}`},
		{"ADD without netns", []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_IFNAME=eth0"}, containerdConf, `{"cniVersion":"1.0.0","code":4,"msg":"CNI_NETNS is required for ADD"}`},
		{"DEL without ifname", []string{"CNI_COMMAND=DEL", "CNI_CONTAINERID=c1"}, containerdConf, `{"cniVersion":"1.0.0","code":4,"msg":"CNI_IFNAME is required for DEL"}`},
		{"config not JSON", delegateEnv("ADD"), "nope", `{"cniVersion":"1.1.0","code":6,"msg":"nodeagent delegate: the network config on stdin is not JSON"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runDelegate(tc.env, tc.stdin, socket)
			if code != 1 || strings.TrimSpace(out) != tc.want {
				t.Errorf("exit %d, stdout\n  %s\nwant\n  %s", code, out, tc.want)
			}
		})
	}
}

func TestDelegateSocketIsOwnerOnlyAndReplacesAStaleOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "agent.sock")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("stale"), 0o666); err != nil {
		t.Fatal(err)
	}
	l, err := ListenDelegate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the socket", len(entries))
	}
	l.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after Close: %v", err)
	}
}

func TestServeDelegateFinishesTheCallsInFlightWhenStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := ListenDelegate(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	entered := make(chan struct{})
	release := make(chan struct{})
	callErr := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- ServeDelegate(ctx, l, func(hctx context.Context, _ Request) ([]byte, error) {
			close(entered)
			<-release
			callErr <- hctx.Err()
			return nil, nil
		})
	}()
	delegated := make(chan int, 1)
	go func() {
		code, _ := runDelegate(delegateEnv("DEL"), containerdConf, path)
		delegated <- code
	}()
	<-entered
	cancel()
	// The agent is stopping; the DEL it started must still complete, not be killed halfway.
	select {
	case err := <-done:
		t.Fatalf("ServeDelegate returned (%v) with a call in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Error("the socket still accepts calls after the stop")
	}
	close(release)
	if err := <-callErr; err != nil {
		t.Errorf("the call's context ended with the agent's: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeDelegate: %v", err)
	}
	if code := <-delegated; code != 0 {
		t.Errorf("delegate exit %d", code)
	}
}

// The config deploy/ installs for containerd must reach an agent started with its defaults.
func TestDeployedDelegateConfigMatchesTheAgentDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "cni", "05-nodeagent.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			DelegateConf
			Type         string          `json:"type"`
			Capabilities map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Plugins) != 1 {
		t.Fatalf("%d plugins, want only the delegate", len(list.Plugins))
	}
	p := list.Plugins[0]
	if p.Type != "nodeagent" || p.Socket != DefaultSocket || p.StateDir != DefaultStateDir ||
		!p.Capabilities["portMappings"] || !p.Capabilities["bandwidth"] {
		t.Errorf("deployed delegate config %+v", p)
	}
	if !delegateVersionsInclude(list.CNIVersion) {
		t.Errorf("cniVersion %q is not one the delegate accepts", list.CNIVersion)
	}
}

func delegateVersionsInclude(v string) bool {
	for _, s := range delegateVersions.SupportedVersions() {
		if s == v {
			return true
		}
	}
	return false
}
