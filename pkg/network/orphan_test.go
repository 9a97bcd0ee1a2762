package network

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"
)

// Tests of what happens around an agent killed in the middle of a call: the attachment lock
// files, the DEL over a half-done ADD, and GC of what such an ADD left.

func newOrphanRunner(t *testing.T, opts RunnerOptions) (*Runner, *fakeExec, *fakeIptables, string) {
	t.Helper()
	state := t.TempDir()
	ipt := newFakeIptables(sharedPortmapChains...)
	opts.Commands = ipt
	opts.AttachmentDir = AttachmentDir(state)
	opts.LockFile = LockFile(state)
	r, fe := newTestRunnerOpts(t, CacheDir(state), opts)
	return r, fe, ipt, state
}

// holdLock takes the attachment's lock through a descriptor of its own, as the plugins of a
// killed agent's call hold it.
func holdLock(t *testing.T, state, containerID string) (release func()) {
	t.Helper()
	if err := os.MkdirAll(AttachmentDir(state), 0o700); err != nil {
		t.Fatal(err)
	}
	rec := attachmentRecord{Network: "nodeagent", ContainerID: containerID, IfName: "eth0"}
	f, err := os.OpenFile(attachmentLockPath(AttachmentDir(state), rec), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"network":"nodeagent","containerID":"` + containerID + `","ifName":"eth0"}`); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

func lockFiles(t *testing.T, state string) []string {
	t.Helper()
	entries, err := os.ReadDir(AttachmentDir(state))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestAddHandsTheAttachmentLockToEveryPlugin(t *testing.T) {
	r, fe, _, state := newOrphanRunner(t, RunnerOptions{})
	var missing []string
	fe.onExec = func(ctx context.Context, c execCall) {
		f := inherited(ctx)
		if f == nil {
			missing = append(missing, c.String())
			return
		}
		// Held while the plugin runs: another process's DEL would wait.
		if _, ok, _ := tryLockAttachment(f.Name()); ok {
			t.Errorf("%s: attachment not locked while it runs", c)
		}
	}
	if _, err := r.Add(context.Background(), webPod("c1")); err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("plugins run without the attachment lock: %v", missing)
	}
	// On the inventory while the attachment lives, and unlocked between calls.
	if got := lockFiles(t, state); !reflect.DeepEqual(got, []string{"nodeagent-c1-eth0"}) {
		t.Fatalf("lock files %v", got)
	}
	h, ok, err := tryLockAttachment(filepath.Join(AttachmentDir(state), "nodeagent-c1-eth0"))
	if !ok || err != nil {
		t.Fatalf("attachment still locked after ADD returned (%v)", err)
	}
	h.release()

	if err := r.Del(context.Background(), webPod("c1")); err != nil {
		t.Fatal(err)
	}
	if got := lockFiles(t, state); len(got) != 0 {
		t.Errorf("lock files after DEL: %v", got)
	}
}

func TestDelWaitsForTheProcessesOfAKilledAgentsAdd(t *testing.T) {
	r, fe, _, state := newOrphanRunner(t, RunnerOptions{})
	release := holdLock(t, state, "c1") // the ADD's host-local, still running

	done := make(chan error, 1)
	go func() { done <- r.Del(context.Background(), webPod("c1")) }()
	select {
	case err := <-done:
		t.Fatalf("DEL returned while the ADD's processes still ran: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if calls := fe.take(); len(calls) != 0 {
		t.Fatalf("DEL ran plugins alongside the ADD's: %s", callNames(calls))
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DEL did not go on once the ADD's processes were gone")
	}
	if got := callNames(fe.take()); got != "bandwidth DEL, portmap DEL, bridge DEL" {
		t.Errorf("calls %s", got)
	}
}

func TestDelThatCannotWaitLongEnoughSaysTryAgain(t *testing.T) {
	r, fe, _, state := newOrphanRunner(t, RunnerOptions{})
	defer holdLock(t, state, "c1")()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := r.Del(ctx, webPod("c1"))
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrTryAgainLater {
		t.Fatalf("got %v, want a CNI error with code 11", err)
	}
	if calls := fe.take(); len(calls) != 0 {
		t.Errorf("plugins run: %s", callNames(calls))
	}
}

func TestDelOverAHalfDoneAddRemovesItsNATRulesAndSucceeds(t *testing.T) {
	r, fe, ipt, _ := newOrphanRunner(t, RunnerOptions{})
	// The ADD was killed after bridge and portmap wrote their rules, before libcni cached a
	// result; bridge's DEL then fails, as it does when its masquerade chain is still
	// referenced. c2 is another pod, alive.
	ipt.tables["iptables"] = append(ipt.tables["iptables"], pluginRules("nodeagent", "c1", "10.88.0.2", 18225)...)
	ipt.tables["iptables"] = append(ipt.tables["iptables"], pluginRules("nodeagent", "c2", "10.88.0.3", 18226)...)
	fe.failOnce = map[string]error{"bridge DEL": errors.New("running [/usr/sbin/iptables -t nat -X CNI-x --wait]: exit status 1: iptables: CHAIN_DEL failed (Device or resource busy)")}

	a := webPod("c1")
	a.PortMappings = []PortMapping{{HostPort: 18225, ContainerPort: 8080, Protocol: "tcp"}}
	if err := r.Del(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if got := callNames(fe.take()); got != "bandwidth DEL, portmap DEL, bridge DEL, bandwidth DEL, portmap DEL, bridge DEL" {
		t.Errorf("calls %s (want the DEL run again after the sweep)", got)
	}
	want := append(slices.Clone(sharedPortmapChains), pluginRules("nodeagent", "c2", "10.88.0.3", 18226)...)
	if got := ipt.table("iptables"); !slices.Equal(sortedCopy(got), sortedCopy(want)) {
		t.Errorf("nat table after the DEL:\n%s\nwant c2's rules only", strings.Join(got, "\n"))
	}
}

func TestDelOfAFinishedAddLeavesTheNATRulesToThePlugins(t *testing.T) {
	r, fe, ipt, _ := newOrphanRunner(t, RunnerOptions{})
	if _, err := r.Add(context.Background(), webPod("c1")); err != nil {
		t.Fatal(err)
	}
	fe.take()
	if err := r.Del(context.Background(), webPod("c1")); err != nil {
		t.Fatal(err)
	}
	if len(ipt.restores) != 0 {
		t.Errorf("a DEL with a cached result and a netns swept: %q", ipt.restores)
	}
}

func TestGCUndoesAnAddKilledBeforeItCachedAResult(t *testing.T) {
	later := func() time.Time { return time.Now().Add(DefaultGCGrace + time.Minute) }
	r, fe, ipt, state := newOrphanRunner(t, RunnerOptions{Now: later})
	ctx := context.Background()
	// A killed ADD: its lock file is there, its result is not, its rules are.
	fe.failOnce = map[string]error{"bandwidth ADD": errors.New("signal: killed")}
	if _, err := r.Add(ctx, webPod("dead1")); err == nil {
		t.Fatal("ADD succeeded")
	}
	ipt.tables["iptables"] = append(ipt.tables["iptables"], pluginRules("nodeagent", "dead1", "10.88.0.5", 18225)...)
	// Rules of an attachment nothing else remembers (an older agent's crash): only the
	// comments name it.
	ipt.tables["iptables"] = append(ipt.tables["iptables"], pluginRules("nodeagent", "dead2", "10.88.0.6", 18226)...)
	// A live pod, and one whose ADD's processes still run.
	if _, err := r.Add(ctx, webPod("live1")); err != nil {
		t.Fatal(err)
	}
	ipt.tables["iptables"] = append(ipt.tables["iptables"], pluginRules("nodeagent", "live1", "10.88.0.2", 18000)...)
	defer holdLock(t, state, "busy1")()
	ipt.tables["iptables"] = append(ipt.tables["iptables"], pluginRules("nodeagent", "busy1", "10.88.0.7", 18001)...)
	fe.take()

	if err := r.GC(ctx, []Attachment{webPod("live1")}); err != nil {
		t.Fatal(err)
	}
	calls := fe.take()
	if got := callNames(calls); got != "bridge GC, portmap GC, bandwidth GC, bandwidth DEL, portmap DEL, bridge DEL" {
		t.Fatalf("calls %s", got)
	}
	if id := calls[3].env["CNI_CONTAINERID"]; id != "dead1" {
		t.Errorf("DEL of %q, want dead1", id)
	}
	var valid []string
	for _, v := range validAttachments(t, calls[0]) {
		valid = append(valid, v.(map[string]any)["containerID"].(string))
	}
	slices.Sort(valid)
	if !reflect.DeepEqual(valid, []string{"busy1", "live1"}) {
		t.Errorf("valid attachments %v, want busy1 (locked) and live1", valid)
	}
	want := slices.Clone(sharedPortmapChains)
	want = append(want, pluginRules("nodeagent", "live1", "10.88.0.2", 18000)...)
	want = append(want, pluginRules("nodeagent", "busy1", "10.88.0.7", 18001)...)
	if got := ipt.table("iptables"); !slices.Equal(sortedCopy(got), sortedCopy(want)) {
		t.Errorf("nat table after GC:\n%s\nwant live1's and busy1's rules only", strings.Join(got, "\n"))
	}
	files := lockFiles(t, state)
	slices.Sort(files)
	if !reflect.DeepEqual(files, []string{"nodeagent-busy1-eth0", "nodeagent-live1-eth0"}) {
		t.Errorf("lock files after GC: %v", files)
	}
}
