package check

import (
	"crypto/sha512"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// The nat table as the bridge plugin (ipMasq) and portmap leave it, per attachment of network
// N with container ID C (iptables-save spelling):
//
//	-A POSTROUTING -s <pod IP>/32 -m comment --comment "name: \"N\" id: \"C\"" -j CNI-<h(N,C)>
//	-A CNI-<h(N,C)> -d <subnet> ... -j ACCEPT;  ! -d 224.0.0.0/4 ... -j MASQUERADE
//	-A CNI-HOSTPORT-DNAT ... --comment "dnat name: \"N\" id: \"C\"" ... -j CNI-DN-<h(N,C)>
//	-A CNI-DN-<h(N,C)> ... -j CNI-HOSTPORT-SETMARK;  ... -j DNAT --to-destination <pod IP>:<port>
//
// where h is the first characters of hex(sha512(N+C)), the chain name cut to 28. A chain is
// this test bed's when its name hashes a container ID it ever handled, or a rule in it or
// jumping to it names the network, or its rules name an address of the pod subnet (unique to
// the test bed). It is leaked when its container is not a live sandbox. A rule of a shared
// chain (POSTROUTING, CNI-HOSTPORT-DNAT, ...) is leaked when it names a container or an
// address that is not live, or jumps to a leaked chain. Other test beds' and the host's own
// rules are never counted: they name another network and subnet.

// chainName is the CNI plugins' utils.MustFormatChainNameWithPrefix.
func chainName(network, id, prefix string) string {
	return fmt.Sprintf("CNI-%s%x", prefix, sha512.Sum512([]byte(network+id)))[:28]
}

// natRule is one -A line.
type natRule struct {
	chain string
	line  string
	jump  string
	id    string   // the container a comment naming our network names
	addrs []string // host addresses of the pod subnet it names (-s, -d, --to-destination)
}

// natTokens splits an iptables-save line into words, honouring its double quotes and
// backslash escapes (comments are quoted, with \" inside).
func natTokens(line string) []string {
	var (
		out    []string
		cur    strings.Builder
		quoted bool
		inWord bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == '"':
			quoted = !quoted
			inWord = true
		case (c == ' ' || c == '\t') && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

var commentOwner = regexp.MustCompile(`name: "([^"]*)" id: "([^"]*)"`)

// parseNAT reads `iptables-save -t nat`: the declared chains and every rule, with what in
// each rule belongs to network in subnet.
func parseNAT(save, network string, subnet *net.IPNet) (declared map[string]bool, rules []natRule) {
	declared = map[string]bool{}
	for _, line := range strings.Split(save, "\n") {
		if strings.HasPrefix(line, ":") {
			if name, _, ok := strings.Cut(line[1:], " "); ok {
				declared[name] = true
			}
			continue
		}
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		t := natTokens(line)
		if len(t) < 2 {
			continue
		}
		r := natRule{chain: t[1], line: line}
		for i := 2; i+1 < len(t); i++ {
			v := t[i+1]
			switch t[i] {
			case "-j", "--jump":
				r.jump = v
			case "--comment":
				if m := commentOwner.FindStringSubmatch(v); m != nil && m[1] == network {
					r.id = m[2]
				}
			case "-s", "--source", "-d", "--destination":
				if ip, n, err := net.ParseCIDR(v); err == nil {
					if ones, bits := n.Mask.Size(); ones == bits && subnet.Contains(ip) {
						r.addrs = append(r.addrs, ip.String())
					}
				} else if ip := net.ParseIP(v); ip != nil && subnet.Contains(ip) {
					r.addrs = append(r.addrs, ip.String())
				}
			case "--to-destination":
				host := v
				if h, _, err := net.SplitHostPort(v); err == nil {
					host = h
				}
				if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil && subnet.Contains(ip) {
					r.addrs = append(r.addrs, ip.String())
				}
			}
		}
		rules = append(rules, r)
	}
	return declared, rules
}

// ownable: a per-attachment chain (not a built-in chain, not portmap's shared ones).
func ownable(chain string) bool {
	return strings.HasPrefix(chain, "CNI-") && !strings.HasPrefix(chain, "CNI-HOSTPORT-")
}

// natVerdict is what judgeNAT found: the leaked chains and the leaked rules of shared chains,
// one line of detail each.
type natVerdict struct {
	chains []string
	rules  []string
}

// judgeNAT decides which of the test bed's chains and rules no live sandbox accounts for.
// known is every container ID the test bed ever handled (for chains with no rule left to
// say whose they are); ready the live sandbox IDs (Bed.live); ips their addresses.
func judgeNAT(declared map[string]bool, rules []natRule, network string, known []string, ready, ips map[string]bool) natVerdict {
	type owner struct {
		ours  bool
		id    string
		addrs []string
		rules int
	}
	owners := map[string]*owner{}
	get := func(c string) *owner {
		if owners[c] == nil {
			owners[c] = &owner{}
		}
		return owners[c]
	}
	for _, id := range known {
		for _, prefix := range []string{"", "DN-", "SN-"} {
			if c := chainName(network, id, prefix); declared[c] {
				o := get(c)
				o.ours, o.id = true, id
			}
		}
	}
	for _, r := range rules {
		if ownable(r.chain) {
			o := get(r.chain)
			o.rules++
			if r.id != "" && o.id == "" {
				o.ours, o.id = true, r.id
			}
			if len(r.addrs) > 0 {
				o.ours = true
				o.addrs = append(o.addrs, r.addrs...)
			}
		}
		if r.id != "" && ownable(r.jump) {
			if o := get(r.jump); o.id == "" {
				o.ours, o.id = true, r.id
			}
		}
	}
	leakedChain := map[string]bool{}
	var v natVerdict
	for c, o := range owners {
		if !o.ours || !declared[c] {
			continue
		}
		switch {
		case o.id != "" && !ready[o.id]:
			leakedChain[c] = true
			v.chains = append(v.chains, fmt.Sprintf("%s (%d rules) of container %s, not a live sandbox", c, o.rules, o.id))
		case o.id == "" && !anyLive(o.addrs, ips):
			leakedChain[c] = true
			v.chains = append(v.chains, fmt.Sprintf("%s (%d rules) for %s, no live sandbox's address", c, o.rules, strings.Join(o.addrs, ", ")))
		}
	}
	for _, r := range rules {
		if ownable(r.chain) {
			continue // judged with its chain
		}
		var why []string
		if r.id != "" && !ready[r.id] {
			why = append(why, "container "+r.id+" is not a live sandbox")
		}
		for _, a := range r.addrs {
			if !ips[a] {
				why = append(why, a+" is no live sandbox's address")
			}
		}
		if leakedChain[r.jump] {
			why = append(why, "jumps to leaked chain "+r.jump)
		} else if (r.id != "" || len(r.addrs) > 0) && ownable(r.jump) && !declared[r.jump] {
			why = append(why, "jumps to missing chain "+r.jump)
		}
		if len(why) > 0 {
			v.rules = append(v.rules, fmt.Sprintf("%s: %s", r.line, strings.Join(why, "; ")))
		}
	}
	sort.Strings(v.chains)
	sort.Strings(v.rules)
	return v
}

func anyLive(addrs []string, ips map[string]bool) bool {
	for _, a := range addrs {
		if ips[a] {
			return true
		}
	}
	return false
}

// nat reads the nat table and adds this test bed's leaked chains and rules to r.
func (b *Bed) nat(l *live, r *Report) error {
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		return fmt.Errorf("iptables-save -t nat: %w", err)
	}
	declared, rules := parseNAT(string(out), b.NetworkName, b.Subnet)
	known, err := b.knownIDs(l)
	if err != nil {
		return err
	}
	v := judgeNAT(declared, rules, b.NetworkName, known, l.ready, l.ips)
	for _, c := range v.chains {
		r.Add(NATChains, "%s", c)
	}
	for _, rule := range v.rules {
		r.Add(NATRules, "%s", rule)
	}
	return nil
}

var hexID = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

// knownIDs is every container ID the test bed may have handled: what CRI lists now, what
// containerd ever logged (a sandbox that came and went, or whose RunPodSandbox failed), and
// what libcni's cache and host-local's leases still name.
func (b *Bed) knownIDs(l *live) ([]string, error) {
	seen := map[string]bool{}
	for id := range l.ids {
		seen[id] = true
	}
	if data, err := os.ReadFile(b.ContainerdLog); err == nil {
		for _, id := range hexID.FindAll(data, -1) {
			seen[string(id)] = true
		}
	} else if b.ContainerdLog != "" {
		return nil, fmt.Errorf("containerd log: %w", err)
	}
	if entries, err := os.ReadDir(b.resultCacheDir()); err == nil {
		for _, e := range entries {
			for _, id := range hexID.FindAllString(e.Name(), -1) {
				seen[id] = true
			}
		}
	}
	if entries, err := os.ReadDir(b.leaseDir()); err == nil {
		for _, e := range entries {
			if data, err := os.ReadFile(filepath.Join(b.leaseDir(), e.Name())); err == nil {
				id, _ := leaseOwner(data)
				seen[id] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	return out, nil
}
