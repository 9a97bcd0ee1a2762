package network

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

// The NAT sweep removes the iptables state the bridge plugin (ipMasq) and portmap keep for an
// attachment, by the names and comments those plugins give it, for attachments that are gone.
// It exists because the plugins cannot always do it themselves:
//
//   - bridge's DEL removes its masquerade rules only when it finds the pod's interface (it
//     reads the addresses from it): a DEL without the netns, or a second DEL after one that
//     failed halfway, leaves `-A POSTROUTING -s <pod ip> -j CNI-<hash>` behind.
//   - An ADD killed halfway leaves rules no result cache entry records, and neither bridge,
//     portmap nor bandwidth implements CNI GC (plugins v1.9.1: "FIXME GC").
//
// What the plugins create, nat table, per container ID (hash = sha512(network+id) in hex):
//
//	bridge:  chain CNI-<hash> (ACCEPT to the subnet, MASQUERADE the rest), and
//	         POSTROUTING -s <ip> -j CNI-<hash>; every rule commented name: "<net>" id: "<id>"
//	portmap: chain CNI-DN-<hash> (the DNAT rules, uncommented), and
//	         CNI-HOSTPORT-DNAT ... -j CNI-DN-<hash>, commented dnat name: "<net>" id: "<id>"
//	         (CNI-SN-<hash> from older portmaps)
//
// The sweep reads the table (iptables-save), and removes, in one iptables-restore
// transaction, the rules commented with a doomed container ID, the rules jumping to a chain
// named after one, and those chains. The shared chains (CNI-HOSTPORT-*) are never touched.
// A transaction that fails (the table changed meanwhile) is retried from a fresh read.

// Commands runs host commands for the runner's NAT sweep: iptables-save and iptables-restore
// (and their ip6tables twins). Tests pass a fake.
type Commands interface {
	// Run runs name with args, stdin on its standard input, and returns its standard
	// output. A command that is not installed fails with an error wrapping exec.ErrNotFound.
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// hostCommands is Commands on the real host.
type hostCommands struct{}

func (hostCommands) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// natFamily is one iptables family's pair of commands.
type natFamily struct{ save, restore string }

var natFamilies = []natFamily{{"iptables-save", "iptables-restore"}, {"ip6tables-save", "ip6tables-restore"}}

// natSweepAttempts bounds the retries of a sweep whose transaction met a table that changed.
const natSweepAttempts = 3

// sweepNAT removes the nat state of network for the container IDs in ids, and for every other
// ID the table's comments name for network, when doomed says so. A family whose tables cannot
// be read (no ip6tables, no IPv6 nat) is skipped, as portmap's own teardown does, unless no
// family can be read.
func sweepNAT(ctx context.Context, cmds Commands, network string, ids []string, doomed func(id string) bool) error {
	var unreadable, errs []error
	readable := 0
	for _, fam := range natFamilies {
		ok, err := sweepNATFamily(ctx, cmds, fam, network, ids, doomed)
		if !ok {
			unreadable = append(unreadable, err)
			continue
		}
		readable++
		if err != nil {
			errs = append(errs, err)
		}
	}
	if readable == 0 {
		return errors.Join(unreadable...)
	}
	return errors.Join(errs...)
}

// sweepNATFamily sweeps one family; readable is false when its nat table cannot be read.
func sweepNATFamily(ctx context.Context, cmds Commands, fam natFamily, network string, ids []string, doomed func(id string) bool) (readable bool, err error) {
	for attempt := 0; attempt < natSweepAttempts; attempt++ {
		out, err := cmds.Run(ctx, nil, fam.save, "-t", "nat")
		if errors.Is(err, exec.ErrNotFound) {
			return true, nil // no such tables on this host, so no plugin made rules there
		}
		if err != nil {
			return attempt > 0, fmt.Errorf("read the nat table: %w", err)
		}
		script := natSweepScript(out, network, ids, doomed)
		if script == nil {
			return true, nil
		}
		if _, err = cmds.Run(ctx, script, fam.restore, "--noflush", "-w"); err == nil {
			return true, nil
		}
		if attempt == natSweepAttempts-1 {
			return true, fmt.Errorf("remove the nat rules of gone attachments: %w", err)
		}
	}
	return true, nil
}

// natSweepScript plans the sweep on one iptables-save output: the iptables-restore input that
// removes the doomed state, or nil when there is none.
func natSweepScript(save []byte, network string, ids []string, doomed func(id string) bool) []byte {
	type rule struct{ chain, line string }
	var rules []rule
	chains := map[string]bool{}
	inNat := false
	for _, l := range strings.Split(string(save), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			inNat = l == "*nat"
		case !inNat:
		case strings.HasPrefix(l, ":"):
			if name, _, ok := strings.Cut(l[1:], " "); ok {
				chains[name] = true
			}
		case strings.HasPrefix(l, "-A "):
			if name, _, ok := strings.Cut(l[3:], " "); ok {
				rules = append(rules, rule{name, l})
			}
		}
	}

	// The comment both plugins write, as iptables-save quotes it.
	commentRE := regexp.MustCompile(`--comment "(?:dnat )?name: \\"` + regexp.QuoteMeta(network) + `\\" id: \\"([^"\\]+)\\""`)
	commentID := func(line string) string {
		if m := commentRE.FindStringSubmatch(line); m != nil {
			return m[1]
		}
		return ""
	}
	gone := map[string]bool{}
	consider := func(id string) {
		if id != "" && !gone[id] && doomed(id) {
			gone[id] = true
		}
	}
	for _, id := range ids {
		consider(id)
	}
	for _, r := range rules {
		consider(commentID(r.line))
	}
	if len(gone) == 0 {
		return nil
	}
	doomedChains := map[string]bool{}
	for id := range gone {
		for _, prefix := range []string{"", "DN-", "SN-"} {
			if c := pluginChainName(network, id, prefix); chains[c] {
				doomedChains[c] = true
			}
		}
	}

	var script bytes.Buffer
	for _, r := range rules {
		if doomedChains[r.chain] {
			continue // flushed below
		}
		if gone[commentID(r.line)] || jumpsTo(r.line, doomedChains) {
			script.WriteString("-D " + r.line[len("-A "):] + "\n")
		}
	}
	sorted := make([]string, 0, len(doomedChains))
	for c := range doomedChains {
		sorted = append(sorted, c)
	}
	slices.Sort(sorted)
	for _, c := range sorted {
		script.WriteString("-F " + c + "\n")
	}
	for _, c := range sorted {
		script.WriteString("-X " + c + "\n")
	}
	if script.Len() == 0 {
		return nil
	}
	return append(append([]byte("*nat\n"), script.Bytes()...), "COMMIT\n"...)
}

// jumpsTo reports whether an iptables-save rule line jumps to one of chains.
func jumpsTo(line string, chains map[string]bool) bool {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && chains[f[i+1]] {
			return true
		}
	}
	return false
}

// pluginChainName is the plugins' per-container chain name (plugins/pkg/utils
// MustFormatChainNameWithPrefix): "CNI-" + prefix + sha512(network+containerID) in hex, cut
// to 28 characters.
func pluginChainName(network, containerID, prefix string) string {
	const maxChainLength = 28
	return fmt.Sprintf("CNI-%s%x", prefix, sha512.Sum512([]byte(network+containerID)))[:maxChainLength]
}
