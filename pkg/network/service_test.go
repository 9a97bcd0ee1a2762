package network

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

type checkFailure struct{ uid, sandbox string }

type serviceFixture struct {
	svc     *Service
	fe      *fakeExec
	binDir  string
	state   string
	mu      sync.Mutex
	sbs     []Sandbox
	failed  []checkFailure
	logHook *logtest.Hook
}

func newServiceFixture(t *testing.T, cfg ServiceConfig, plugins ...string) *serviceFixture {
	t.Helper()
	f := &serviceFixture{fe: &fakeExec{}, binDir: fakeBinDir(t, plugins...), state: t.TempDir()}
	logger, hook := logtest.NewNullLogger()
	f.logHook = hook
	if cfg.PodCIDR == "" && cfg.ConfigFile == "" {
		cfg.PodCIDR = "10.88.0.0/16"
	}
	cfg.BinDirs = []string{f.binDir}
	cfg.StateDir = f.state
	cfg.Socket = filepath.Join(t.TempDir(), "agent.sock")
	cfg.Log = logrus.NewEntry(logger)
	cfg.Runner = RunnerOptions{Exec: f.fe, Commands: newFakeIptables()}
	cfg.Sandboxes = func(context.Context) ([]Sandbox, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]Sandbox(nil), f.sbs...), nil
	}
	cfg.CheckFailed = func(uid, sandbox string, _ error) {
		f.mu.Lock()
		f.failed = append(f.failed, checkFailure{uid, sandbox})
		f.mu.Unlock()
	}
	svc, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

var allPlugins = []string{"bridge", "host-local", "portmap", "bandwidth"}

func TestServiceServesADDAndDELOnceReady(t *testing.T) {
	var calls []Call // each call goes to the pod's timeline, refused ones too
	f := newServiceFixture(t, ServiceConfig{Observe: func(c Call) { calls = append(calls, c) }}, allPlugins...)
	ctx := context.Background()
	req := Request{Command: CommandAdd, ContainerID: "c1", NetNS: os.DevNull, IfName: "eth0",
		Args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=u1", StdinData: []byte(containerdConf)}

	// Before validation an ADD is turned away with "try again later".
	_, err := f.svc.handle(ctx, req)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrTryAgainLater {
		t.Fatalf("ADD before ready: %v", err)
	}

	if !f.svc.validate(ctx) || f.svc.Ready() != nil {
		t.Fatalf("not ready: %v", f.svc.Ready())
	}
	// The list is saved for the delegate, with the IPAM store under the state dir.
	saved, err := LoadSavedNetwork(f.state)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(saved.Bytes()), filepath.Join(f.state, "networks")) {
		t.Errorf("saved list has no IPAM dataDir under the state dir:\n%s", saved.Bytes())
	}
	f.fe.take()

	out, err := f.svc.handle(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The result comes back in the cniVersion containerd's config asked for.
	if !strings.Contains(string(out), `"cniVersion":"1.0.0"`) || !strings.Contains(string(out), "10.88.0.2/16") {
		t.Errorf("ADD result %s", out)
	}
	if got := callNames(f.fe.take()); got != "bridge ADD, portmap ADD, bandwidth ADD" {
		t.Errorf("ADD calls %s", got)
	}
	req.Command = CommandDel
	if _, err := f.svc.handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := callNames(f.fe.take()); got != "bandwidth DEL, portmap DEL, bridge DEL" {
		t.Errorf("DEL calls %s", got)
	}
	if len(calls) != 3 {
		t.Fatalf("observed %+v, want the three calls", calls)
	}
	for i, want := range []struct {
		command string
		failed  bool
	}{{CommandAdd, true}, {CommandAdd, false}, {CommandDel, false}} {
		if c := calls[i]; c.Command != want.command || c.PodUID != "u1" || c.SandboxID != "c1" || (c.Err != nil) != want.failed {
			t.Errorf("observed call %d: %+v, want %s of pod u1 (failed: %v)", i, c, want.command, want.failed)
		}
	}
}

func TestServiceWithAMissingPluginIsNotReadyUntilItAppears(t *testing.T) {
	f := newServiceFixture(t, ServiceConfig{}, "bridge", "host-local", "portmap")
	ctx := context.Background()
	if f.svc.validate(ctx) {
		t.Fatal("ready without the bandwidth plugin")
	}
	err := f.svc.Ready()
	if !errors.Is(err, ErrPluginNotFound) || !strings.Contains(err.Error(), `"bandwidth"`) {
		t.Fatalf("Ready() = %v, want the missing plugin named", err)
	}
	// STATUS from containerd says "not available", which containerd shows as network not ready.
	_, serr := f.svc.handle(ctx, Request{Command: CommandStatus})
	var ce *types.Error
	if !errors.As(serr, &ce) || ce.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS while not ready: %v", serr)
	}
	// A second failed validation with the same reason is not logged again.
	f.svc.validate(ctx)
	if n := len(f.logHook.AllEntries()); n != 1 {
		t.Errorf("%d log entries for one problem, want 1", n)
	}

	if err := os.WriteFile(filepath.Join(f.binDir, "bandwidth"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if !f.svc.validate(ctx) || f.svc.Ready() != nil {
		t.Fatalf("still not ready: %v", f.svc.Ready())
	}
}

func TestServiceRefusesABadConfigFileNamingIt(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"bad-json.conflist", `{"cniVersion": "1.0.0", "name": "x", "plugins": [}`, "bad JSON at line 1"},
		{"old.conflist", `{"cniVersion": "9.9.9", "name": "x", "plugins": [{"type": "bridge"}]}`, `unsupported cniVersion "9.9.9"`},
		{"missing.conflist", "", "no such file or directory"},
	} {
		path := filepath.Join(dir, tc.name)
		if tc.content != "" {
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := NewService(ServiceConfig{ConfigFile: path, BinDirs: []string{fakeBinDir(t, allPlugins...)}, StateDir: t.TempDir()})
		if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "--cni-config") ||
			!strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrInvalidConfig naming the file and %q", tc.name, err, tc.want)
		}
	}
	// A bad pod CIDR for the generated list is as fatal, and names the flag.
	_, err := NewService(ServiceConfig{PodCIDR: "10.88.0.1/16", BinDirs: []string{t.TempDir()}, StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "pod-cidr") || !strings.Contains(err.Error(), "10.88.0.1/16") {
		t.Errorf("bad pod CIDR: %v", err)
	}
}

func TestServiceGCKeepsEveryReadySandboxAndCheckReportsOnlyMine(t *testing.T) {
	f := newServiceFixture(t, ServiceConfig{}, allPlugins...)
	ctx := context.Background()
	if !f.svc.validate(ctx) {
		t.Fatal(f.svc.Ready())
	}
	f.sbs = []Sandbox{
		{ID: "mine-ok", PodUID: "u1", Ready: true, Mine: true},
		{ID: "mine-lost", PodUID: "u2", Ready: true, Mine: true}, // no cached result
		{ID: "other", PodUID: "u3", Ready: true},                 // another agent's
		{ID: "stopped", PodUID: "u4", Mine: true},
	}
	if _, err := f.svc.currentRunner().Add(ctx, webPod("mine-ok")); err != nil {
		t.Fatal(err)
	}
	f.fe.take()

	f.svc.gc(ctx)
	calls := f.fe.take()
	if got := callNames(calls); got != "bridge GC, portmap GC, bandwidth GC" {
		t.Fatalf("GC calls %s", got)
	}
	var ids []string
	for _, v := range validAttachments(t, calls[0]) {
		ids = append(ids, v.(map[string]any)["containerID"].(string))
	}
	for _, want := range []string{"mine-ok", "mine-lost", "other"} {
		if !strings.Contains(strings.Join(ids, ","), want) {
			t.Errorf("GC valid attachments %v lack %s", ids, want)
		}
	}
	if strings.Contains(strings.Join(ids, ","), "stopped") {
		t.Errorf("GC kept the stopped sandbox: %v", ids)
	}

	f.svc.check(ctx)
	if got := callNames(f.fe.take()); got != "bridge CHECK, portmap CHECK, bandwidth CHECK" {
		t.Errorf("CHECK calls %s", got)
	}
	if len(f.failed) != 1 || f.failed[0] != (checkFailure{"u2", "mine-lost"}) {
		t.Errorf("check failures %v, want only mine-lost", f.failed)
	}
}

func TestServiceWaitsForTheNodesPodCIDR(t *testing.T) {
	cidrs := make(chan string, 1)
	f := newServiceFixture(t, ServiceConfig{NodePodCIDR: cidrs}, allPlugins...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := f.svc.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx, l) }()

	if err := f.svc.Ready(); err == nil || !strings.Contains(err.Error(), "spec.podCIDR") {
		t.Fatalf("Ready() before the Node's CIDR = %v", err)
	}
	cidrs <- "10.244.3.0/24"
	deadline := time.Now().Add(5 * time.Second)
	for f.svc.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", f.svc.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	saved, err := LoadSavedNetwork(f.state)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(saved.Bytes()), "10.244.3.0/24") {
		t.Errorf("the list does not use the Node's CIDR:\n%s", saved.Bytes())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
