package check

import (
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestNatTokensHonourQuotesAndEscapes(t *testing.T) {
	got := natTokens(`-A POSTROUTING -s 10.88.11.5/32 -m comment --comment "name: \"tb\" id: \"abc\"" -j CNI-x`)
	want := []string{"-A", "POSTROUTING", "-s", "10.88.11.5/32", "-m", "comment", "--comment", `name: "tb" id: "abc"`, "-j", "CNI-x"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestChainNameIsThePluginsHash(t *testing.T) {
	// The CNI plugins' own vectors (pkg/utils, FormatChainName), and portmap's DN- prefix.
	for _, tc := range []struct{ network, id, prefix, want string }{
		{"test", "1234", "", "CNI-2bbe0c48b91a7d1b8a6753a8"},
		{"testalongnamethatdoesnotmakesense", "1234", "", "CNI-374f33fe84ab0ed84dcdebe3"},
		{"nodeagent-tb11", "0123", "DN-", "CNI-DN-5b052f3c381c41a9a0333"},
	} {
		if got := chainName(tc.network, tc.id, tc.prefix); got != tc.want {
			t.Errorf("chainName(%q, %q, %q) = %q, want %q", tc.network, tc.id, tc.prefix, got, tc.want)
		}
	}
}

// natSave is a nat table with a live pod (a, 10.88.11.5, with a hostPort), a dead one whose
// masquerade and hostPort rules were left (b, 10.88.11.6), an empty chain of a third (c) that
// only its name ties to us, a DNAT chain whose jump is gone (d), and another test bed's pod.
func natSave(net string) string {
	a, b, c, d := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64), strings.Repeat("d", 64)
	ca, cb, dna, dnb := chainName(net, a, ""), chainName(net, b, ""), chainName(net, a, "DN-"), chainName(net, b, "DN-")
	cc, dnd := chainName(net, c, ""), chainName(net, d, "DN-")
	other := chainName("nodeagent-tb4", a, "")
	comment := func(kind, id string) string {
		return fmt.Sprintf(`-m comment --comment "%sname: \"%s\" id: \"%s\""`, kind, net, id)
	}
	return strings.Join([]string{
		"*nat",
		":PREROUTING ACCEPT [0:0]",
		":POSTROUTING ACCEPT [0:0]",
		":CNI-HOSTPORT-DNAT - [0:0]",
		":CNI-HOSTPORT-SETMARK - [0:0]",
		":" + ca + " - [0:0]",
		":" + cb + " - [0:0]",
		":" + cc + " - [0:0]",
		":" + dna + " - [0:0]",
		":" + dnb + " - [0:0]",
		":" + dnd + " - [0:0]",
		":" + other + " - [0:0]",
		"-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
		"-A POSTROUTING -s 10.88.11.5/32 " + comment("", a) + " -j " + ca,
		"-A POSTROUTING -s 10.88.11.6/32 " + comment("", b) + " -j " + cb,
		"-A POSTROUTING -s 10.88.4.9/32 -m comment --comment \"name: \\\"nodeagent-tb4\\\" id: \\\"" + a + "\\\"\" -j " + other,
		"-A CNI-HOSTPORT-DNAT -p tcp " + comment("dnat ", a) + " -m multiport --dports 32110 -j " + dna,
		"-A CNI-HOSTPORT-DNAT -p tcp " + comment("dnat ", b) + " -m multiport --dports 32111 -j " + dnb,
		"-A " + ca + " -d 10.88.11.0/24 " + comment("", a) + " -j ACCEPT",
		"-A " + ca + " ! -d 224.0.0.0/4 " + comment("", a) + " -j MASQUERADE",
		"-A " + cb + " -d 10.88.11.0/24 " + comment("", b) + " -j ACCEPT",
		"-A " + dna + " -s 10.88.11.0/24 -p tcp -m tcp --dport 32110 -j CNI-HOSTPORT-SETMARK",
		"-A " + dna + " -p tcp -m tcp --dport 32110 -j DNAT --to-destination 10.88.11.5:80",
		"-A " + dnb + " -p tcp -m tcp --dport 32111 -j DNAT --to-destination 10.88.11.6:80",
		"-A " + dnd + " -p tcp -m tcp --dport 32112 -j DNAT --to-destination 10.88.11.7:80",
		"-A " + other + " -d 10.88.4.0/24 -j ACCEPT",
		"COMMIT",
	}, "\n")
}

func TestJudgeNATFindsWhatNoReadySandboxAccountsFor(t *testing.T) {
	const network = "nodeagent-tb11"
	_, subnet, _ := net.ParseCIDR("10.88.11.0/24")
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	declared, rules := parseNAT(natSave(network), network, subnet)
	v := judgeNAT(declared, rules, network, []string{a, b, c}, map[string]bool{a: true}, map[string]bool{"10.88.11.5": true})

	wantChains := []string{chainName(network, b, ""), chainName(network, b, "DN-"), chainName(network, c, ""),
		chainName(network, strings.Repeat("d", 64), "DN-")}
	if len(v.chains) != len(wantChains) {
		t.Fatalf("leaked chains:\n%s\nwant %d: %v", strings.Join(v.chains, "\n"), len(wantChains), wantChains)
	}
	for _, w := range wantChains {
		found := false
		for _, c := range v.chains {
			found = found || strings.HasPrefix(c, w+" ")
		}
		if !found {
			t.Errorf("chain %s not reported; got:\n%s", w, strings.Join(v.chains, "\n"))
		}
	}
	// b's POSTROUTING jump and its CNI-HOSTPORT-DNAT entry; nothing of a, nothing of tb4.
	if len(v.rules) != 2 {
		t.Fatalf("leaked rules:\n%s\nwant b's two", strings.Join(v.rules, "\n"))
	}
	for _, r := range v.rules {
		if !strings.Contains(r, b) || strings.Contains(r, "10.88.4.") {
			t.Errorf("unexpected leaked rule %s", r)
		}
	}

	// Once nothing is live, every chain and rule of the test bed is leaked, and still
	// nothing of the other test bed.
	v = judgeNAT(declared, rules, network, []string{a, b, c}, nil, nil)
	if len(v.chains) != 6 || len(v.rules) != 4 {
		t.Fatalf("with nothing live: %d chains, %d rules, want 6 and 4:\n%s\n%s", len(v.chains), len(v.rules),
			strings.Join(v.chains, "\n"), strings.Join(v.rules, "\n"))
	}
}

func TestLeaseOwnerAndLogDirUID(t *testing.T) {
	if id, ifname := leaseOwner([]byte("abc\r\neth0")); id != "abc" || ifname != "eth0" {
		t.Errorf("leaseOwner = %q, %q", id, ifname)
	}
	if uid := logDirUID("default_web-node_0123abcd"); uid != "0123abcd" {
		t.Errorf("logDirUID = %q", uid)
	}
	if got := unescapeOctal(`/a\040b`); got != "/a b" {
		t.Errorf("unescapeOctal = %q", got)
	}
}
