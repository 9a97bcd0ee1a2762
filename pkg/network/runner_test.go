package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"
)

func newTestRunner(t *testing.T, cacheDir string) (*Runner, *fakeExec) {
	t.Helper()
	return newTestRunnerOpts(t, cacheDir, RunnerOptions{})
}

func newTestRunnerOpts(t *testing.T, cacheDir string, opts RunnerOptions) (*Runner, *fakeExec) {
	t.Helper()
	conf, err := DefaultConflist("nodeagent", "10.88.0.0/16", "", ConflistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := LoadNetwork(conf, []string{fakeBinDir(t, "bridge", "host-local", "portmap", "bandwidth")})
	if err != nil {
		t.Fatal(err)
	}
	fe := &fakeExec{}
	opts.Exec = fe
	if opts.Commands == nil {
		opts.Commands = newFakeIptables() // never the host's iptables from a unit test
	}
	r, err := NewRunner(n, cacheDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, fe
}

func webPod(containerID string) Attachment {
	return Attachment{
		ContainerID: containerID, NetNS: os.DevNull, IfName: "eth0",
		PodName: "web", PodNamespace: "default", PodUID: "uid-" + containerID,
	}
}

func TestAddRunsTheListInOrderWithPodArgsAndCapabilities(t *testing.T) {
	r, fe := newTestRunner(t, t.TempDir())
	a := webPod("c1")
	a.PortMappings = []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}
	a.Bandwidth = &Bandwidth{IngressRate: 1000000, IngressBurst: 2000000}

	res, err := r.Add(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	r100, err := types100.GetResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(r100.IPs) != 1 || r100.IPs[0].Address.String() != "10.88.0.2/16" {
		t.Errorf("result IPs %v", r100.IPs)
	}

	calls := fe.take()
	if got := callNames(calls); got != "bridge ADD, portmap ADD, bandwidth ADD" {
		t.Fatalf("calls %s", got)
	}
	for _, c := range calls {
		if want := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=uid-c1"; c.env["CNI_ARGS"] != want {
			t.Errorf("%s CNI_ARGS %q, want %q", c, c.env["CNI_ARGS"], want)
		}
		if c.env["CNI_CONTAINERID"] != "c1" || c.env["CNI_IFNAME"] != "eth0" || c.env["CNI_NETNS"] != os.DevNull {
			t.Errorf("%s env %v", c, c.env)
		}
	}
	// libcni hands each plugin only the capabilities it declares.
	if _, ok := calls[0].stdin["runtimeConfig"]; ok {
		t.Errorf("bridge got runtimeConfig %v", calls[0].stdin["runtimeConfig"])
	}
	wantPM := []any{map[string]any{"hostPort": 8080.0, "containerPort": 80.0, "protocol": "tcp"}}
	if got := calls[1].stdin["runtimeConfig"]; !reflect.DeepEqual(got, map[string]any{"portMappings": wantPM}) {
		t.Errorf("portmap runtimeConfig %v", got)
	}
	if calls[1].stdin["prevResult"] == nil {
		t.Error("portmap got no prevResult")
	}
	wantBW := map[string]any{"ingressRate": 1e6, "ingressBurst": 2e6}
	if got := calls[2].stdin["runtimeConfig"]; !reflect.DeepEqual(got, map[string]any{"bandwidth": wantBW}) {
		t.Errorf("bandwidth runtimeConfig %v", got)
	}
}

func TestAddFailureKeepsThePluginsErrorCode(t *testing.T) {
	r, fe := newTestRunner(t, t.TempDir())
	fe.fail = map[string]error{"portmap ADD": types.NewError(types.ErrTryAgainLater, "iptables lock busy", "")}

	_, err := r.Add(context.Background(), webPod("c1"))
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrTryAgainLater {
		t.Fatalf("got %v, want a wrapped CNI error with code 11", err)
	}
	want := `CNI ADD of network "nodeagent" for sandbox c1 (pod default/web): plugin type="portmap" failed (add): iptables lock busy`
	if err.Error() != want {
		t.Errorf("error\n  %v\nwant\n  %s", err, want)
	}
	if got := toCNIError(err); got.Code != types.ErrTryAgainLater || got.Msg != want {
		t.Errorf("delegate error %+v", got)
	}
}

func TestDelGetsThePrevResultAndIsIdempotent(t *testing.T) {
	cache := t.TempDir()
	r, fe := newTestRunner(t, cache)
	ctx := context.Background()
	if _, err := r.Add(ctx, webPod("c1")); err != nil {
		t.Fatal(err)
	}
	fe.take()

	if err := r.Del(ctx, webPod("c1")); err != nil {
		t.Fatal(err)
	}
	calls := fe.take()
	if got := callNames(calls); got != "bandwidth DEL, portmap DEL, bridge DEL" {
		t.Fatalf("calls %s", got)
	}
	for _, c := range calls {
		if c.stdin["prevResult"] == nil {
			t.Errorf("%s got no prevResult", c)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "results")); len(entries) != 0 {
		t.Errorf("result cache not cleaned: %v", entries)
	}

	// Again, with nothing cached any more: plugins are still called (they own the state) and
	// the DEL succeeds.
	if err := r.Del(ctx, webPod("c1")); err != nil {
		t.Fatal(err)
	}
	calls = fe.take()
	if len(calls) != 3 || calls[0].stdin["prevResult"] != nil {
		t.Errorf("second DEL calls %s, first stdin %v", callNames(calls), calls[0].stdin)
	}
}

func TestDelOfAGoneNetNSPassesNoNetNS(t *testing.T) {
	r, fe := newTestRunner(t, t.TempDir())
	a := webPod("c1")
	a.NetNS = filepath.Join(t.TempDir(), "gone")
	if err := r.Del(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	for _, c := range fe.take() {
		if ns, ok := c.env["CNI_NETNS"]; ok && ns != "" {
			t.Errorf("%s CNI_NETNS %q, want empty", c, ns)
		}
	}
}

func TestCheckNeedsAnAddedAttachment(t *testing.T) {
	r, fe := newTestRunner(t, t.TempDir())
	ctx := context.Background()
	if err := r.Check(ctx, webPod("c1")); !errors.Is(err, ErrNotAttached) {
		t.Fatalf("CHECK of an attachment never added: %v, want ErrNotAttached", err)
	}
	if calls := fe.take(); len(calls) != 0 {
		t.Errorf("plugins called: %s", callNames(calls))
	}
	if _, err := r.Add(ctx, webPod("c1")); err != nil {
		t.Fatal(err)
	}
	fe.take()
	if err := r.Check(ctx, webPod("c1")); err != nil {
		t.Fatal(err)
	}
	calls := fe.take()
	if got := callNames(calls); got != "bridge CHECK, portmap CHECK, bandwidth CHECK" {
		t.Fatalf("calls %s", got)
	}
	if calls[0].stdin["prevResult"] == nil {
		t.Error("CHECK got no prevResult")
	}
}

func validAttachments(t *testing.T, c execCall) []any {
	t.Helper()
	v, _ := c.stdin["cni.dev/valid-attachments"].([]any)
	return v
}

func TestGCAfterARestartDeletesDeadAttachmentsAndKeepsLiveOnes(t *testing.T) {
	cache := t.TempDir()
	ctx := context.Background()
	before, _ := newTestRunner(t, cache)
	for _, id := range []string{"c1", "c2"} {
		if _, err := before.Add(ctx, webPod(id)); err != nil {
			t.Fatal(err)
		}
	}

	// A new runner on the same cache is the agent after kill -9: it remembers nothing, and
	// the attachments are older than the grace period.
	later := func() time.Time { return time.Now().Add(DefaultGCGrace + time.Minute) }
	r, fe := newTestRunnerOpts(t, cache, RunnerOptions{Now: later})
	if err := r.GC(ctx, []Attachment{webPod("c1")}); err != nil {
		t.Fatal(err)
	}
	calls := fe.take()
	if got := callNames(calls); got != "bandwidth DEL, portmap DEL, bridge DEL, bridge GC, portmap GC, bandwidth GC" {
		t.Fatalf("calls %s", got)
	}
	if calls[0].env["CNI_CONTAINERID"] != "c2" {
		t.Errorf("DEL for %q, want c2", calls[0].env["CNI_CONTAINERID"])
	}
	want := []any{map[string]any{"containerID": "c1", "ifname": "eth0"}}
	for _, c := range calls[3:] {
		if got := validAttachments(t, c); !reflect.DeepEqual(got, want) {
			t.Errorf("%s valid attachments %v, want %v", c, got, want)
		}
	}
}

func TestGCNeverCollectsWhatThisProcessAddedAndDidNotDelete(t *testing.T) {
	r, fe := newTestRunner(t, t.TempDir())
	ctx := context.Background()
	if _, err := r.Add(ctx, webPod("c1")); err != nil {
		t.Fatal(err)
	}
	fe.take()

	// The caller's snapshot of the runtime predates c1.
	if err := r.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	calls := fe.take()
	if got := callNames(calls); got != "bridge GC, portmap GC, bandwidth GC" {
		t.Fatalf("calls %s", got)
	}
	if got, want := validAttachments(t, calls[0]), []any{map[string]any{"containerID": "c1", "ifname": "eth0"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("valid attachments %v, want %v", got, want)
	}

	if err := r.Del(ctx, webPod("c1")); err != nil {
		t.Fatal(err)
	}
	fe.take()
	if err := r.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := validAttachments(t, fe.take()[0]); len(got) != 0 {
		t.Errorf("valid attachments after DEL %v, want none", got)
	}
}

func TestValidateAsksEachPluginForTheListVersion(t *testing.T) {
	r, fe := newTestRunner(t, t.TempDir())
	if err := r.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := callNames(fe.take()); got != "bridge VERSION, portmap VERSION, bandwidth VERSION" {
		t.Errorf("calls %s", got)
	}
}

func TestNewRunnerRequiresACacheDir(t *testing.T) {
	n, err := LoadNetwork([]byte(`{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"}]}`), []string{fakeBinDir(t, "bridge")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRunner(n, "", RunnerOptions{}); err == nil {
		t.Fatal("no error without a cache dir")
	}
}

// The result the delegate prints is converted to the version containerd's config asked for.
func TestEncodeResultConvertsToTheCallersVersion(t *testing.T) {
	res, err := types100.NewResultFromResult(mustResult(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeResult(res, "0.4.0")
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out["cniVersion"] != "0.4.0" {
		t.Errorf("cniVersion %v", out["cniVersion"])
	}
}

func mustResult(t *testing.T) types.Result {
	t.Helper()
	res, err := types100.NewResult([]byte(fakeBridgeResult))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestGCKeepsAttachmentsAnotherProcessJustAdded(t *testing.T) {
	cache := t.TempDir()
	ctx := context.Background()
	other, _ := newTestRunner(t, cache)
	if _, err := other.Add(ctx, webPod("c9")); err != nil {
		t.Fatal(err)
	}

	// This runner did not add c9 and the runtime does not list it yet (its RunPodSandbox is
	// still returning): the fresh cache entry keeps it.
	r, fe := newTestRunner(t, cache)
	if err := r.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	calls := fe.take()
	if got := callNames(calls); got != "bridge GC, portmap GC, bandwidth GC" {
		t.Fatalf("calls %s", got)
	}
	if got, want := validAttachments(t, calls[0]), []any{map[string]any{"containerID": "c9", "ifname": "eth0"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("valid attachments %v, want %v", got, want)
	}
}

func TestGCWaitsForAnADDInAnotherProcess(t *testing.T) {
	cache := t.TempDir()
	lock := filepath.Join(t.TempDir(), "lock")
	r, fe := newTestRunnerOpts(t, cache, RunnerOptions{LockFile: lock})

	// Another process in the middle of an ADD holds the lock shared.
	release, err := flock(lock, unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.GC(context.Background(), nil) }()
	select {
	case err := <-done:
		t.Fatalf("GC ran while an ADD held the lock (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	if calls := fe.take(); len(calls) != 0 {
		t.Fatalf("GC called plugins while an ADD held the lock: %s", callNames(calls))
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// ADDs share the lock with each other.
	release, err = flock(lock, unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := r.Add(context.Background(), webPod("c1")); err != nil {
		t.Fatal(err)
	}
}

// TestRunnerBoundsPluginsRunningAtOnce: a burst of sandboxes runs at most MaxParallel plugin
// chains at a time, and every call still completes.
func TestRunnerBoundsPluginsRunningAtOnce(t *testing.T) {
	r, fe := newTestRunnerOpts(t, t.TempDir(), RunnerOptions{MaxParallel: 2})
	fe.gate = make(chan struct{})
	const n = 6
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := r.Add(context.Background(), webPod(fmt.Sprintf("sb%d", i)))
			errs <- err
		}()
	}
	waitRunning(t, fe, 2) // two run at once...
	// ...and, released one at a time, never more.
	for done := 0; done < n; {
		select {
		case fe.gate <- struct{}{}:
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
			done++
		case <-time.After(10 * time.Second):
			t.Fatalf("stuck after %d of %d ADDs", done, n)
		}
	}
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.maxRunning != 2 {
		t.Errorf("at most %d plugins ran at once, want 2", fe.maxRunning)
	}
}

// TestRunnerWaitingForASlotHonoursTheContext: a caller whose context ends while it waits
// for a turn gets the context's error, and its ADD is not remembered as an attachment.
func TestRunnerWaitingForASlotHonoursTheContext(t *testing.T) {
	r, fe := newTestRunnerOpts(t, t.TempDir(), RunnerOptions{MaxParallel: 1})
	fe.gate = make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := r.Add(context.Background(), webPod("sb-first"))
		first <- err
	}()
	waitRunning(t, fe, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Add(ctx, webPod("sb-late")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("late ADD: %v, want the context's deadline", err)
	}
	r.mu.Lock()
	_, known := r.known[attachmentKey{"sb-late", "eth0"}]
	r.mu.Unlock()
	if known {
		t.Error("a late ADD that never ran is remembered as an attachment")
	}
	close(fe.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// waitRunning waits until n plugins are held at the fake's gate.
func waitRunning(t *testing.T, fe *fakeExec, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fe.mu.Lock()
		running := fe.running
		fe.mu.Unlock()
		if running == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d plugins running, want %d", running, n)
		}
		time.Sleep(time.Millisecond)
	}
}
