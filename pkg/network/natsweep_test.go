package network

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestPluginChainNameIsThePluginsOwn(t *testing.T) {
	// Seen on a node: the bridge plugin's masquerade chain for this network and sandbox.
	got := pluginChainName("nodeagent-tb6", "2cb23a1a69bdc9df3de5db6f3642e11de46aa31c1a0b25a8d0ed7600679c8f8b", "")
	if want := "CNI-8073185d57e0a944d8846625"; got != want {
		t.Errorf("chain %s, want %s", got, want)
	}
	if got := pluginChainName("n", "c", "DN-"); len(got) != 28 || !strings.HasPrefix(got, "CNI-DN-") {
		t.Errorf("portmap chain %q", got)
	}
}

func TestSweepRemovesTheNATStateOfGoneAttachmentsOnly(t *testing.T) {
	live := pluginRules("nodeagent", "live1", "10.88.0.2", 18000)
	gone := pluginRules("nodeagent", "gone2", "10.88.0.3", 18225)
	other := pluginRules("othernet", "gone2", "10.99.0.3", 18226) // same ID, another network
	// An ADD killed after portmap made its chain and before it linked it: no comment names
	// the ID, only the caller knows it.
	halfDN := pluginChainName("nodeagent", "half3", "DN-")
	half := []string{":" + halfDN + " - [0:0]", "-A " + halfDN + " -p tcp -m tcp --dport 18300 -j DNAT --to-destination 10.88.0.4:8080"}
	var table []string
	table = append(table, sharedPortmapChains...)
	table = append(table, live...)
	table = append(table, gone...)
	table = append(table, other...)
	table = append(table, half...)
	f := newFakeIptables(table...)

	err := sweepNAT(context.Background(), f, "nodeagent", []string{"half3"}, func(id string) bool { return id != "live1" })
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(slices.Clone(sharedPortmapChains), live...), other...)
	if got := f.table("iptables"); !slices.Equal(sortedCopy(got), sortedCopy(want)) {
		t.Errorf("table after the sweep:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(f.restores) != 1 {
		t.Errorf("%d restore transactions, want one: %q", len(f.restores), f.restores)
	}

	// Nothing left to do: no transaction at all.
	f.restores = nil
	if err := sweepNAT(context.Background(), f, "nodeagent", []string{"half3"}, func(id string) bool { return id != "live1" }); err != nil || len(f.restores) != 0 {
		t.Errorf("second sweep: %v, restores %q", err, f.restores)
	}
}

func TestSweepRetriesWhenTheTableChangedMeanwhile(t *testing.T) {
	gone := pluginRules("nodeagent", "gone2", "10.88.0.3", 18225)
	f := newFakeIptables(append(slices.Clone(sharedPortmapChains), gone...)...)
	raced := false
	f.beforeRestore = func(f *fakeIptables) {
		if raced {
			return
		}
		raced = true
		// Another DEL removes the POSTROUTING jump between our read and our write.
		f.mu.Lock()
		f.tables["iptables"] = slices.DeleteFunc(f.tables["iptables"], func(s string) bool { return strings.HasPrefix(s, "-A POSTROUTING -s 10.88.0.3/32") })
		f.mu.Unlock()
	}
	if err := sweepNAT(context.Background(), f, "nodeagent", nil, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if got := f.table("iptables"); !slices.Equal(got, sharedPortmapChains) {
		t.Errorf("table after the sweep:\n%s", strings.Join(got, "\n"))
	}
	if len(f.restores) != 2 {
		t.Errorf("%d restore transactions, want a refused one and its retry", len(f.restores))
	}
}

func TestSweepCoversBothFamiliesAndSkipsAMissingOne(t *testing.T) {
	f := newFakeIptables(pluginRules("nodeagent", "gone2", "10.88.0.3", 18225)...)
	f.tables["ip6tables"] = withBuiltinChains(pluginRules("nodeagent", "gone2", "fd00::3", 18225))
	if err := sweepNAT(context.Background(), f, "nodeagent", nil, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		if got := f.table(fam); len(got) != 0 {
			t.Errorf("%s after the sweep:\n%s", fam, strings.Join(got, "\n"))
		}
	}

	v4only := newFakeIptables(pluginRules("nodeagent", "gone2", "10.88.0.3", 18225)...)
	if err := sweepNAT(context.Background(), v4only, "nodeagent", nil, func(string) bool { return true }); err != nil {
		t.Fatalf("ip6tables not installed: %v", err)
	}
	if got := v4only.table("iptables"); len(got) != 0 {
		t.Errorf("iptables after the sweep:\n%s", strings.Join(got, "\n"))
	}
}

// brokenSave fails every iptables-save: tables that cannot be read at all.
type brokenSave struct{}

func (brokenSave) Run(_ context.Context, _ []byte, name string, _ ...string) ([]byte, error) {
	return nil, fmt.Errorf("%s: can't initialize iptables table `nat': Permission denied", name)
}

func TestSweepFailsWhenNoTableCanBeRead(t *testing.T) {
	err := sweepNAT(context.Background(), brokenSave{}, "nodeagent", []string{"c1"}, func(string) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("got %v, want the read error", err)
	}
	if err := sweepNAT(context.Background(), &fakeIptables{tables: map[string][]string{}}, "nodeagent", nil, func(string) bool { return true }); err != nil {
		t.Errorf("no iptables installed at all: %v, want nothing to do", err)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
