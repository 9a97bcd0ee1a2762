package podmanager

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// dnsConfig builds the sandbox resolver config. There is no cluster DNS service yet, so
// ClusterFirst falls back to the host's resolv.conf, as the kubelet does when it has no
// cluster DNS configured. dnsPolicy None uses only spec.dnsConfig; spec.dnsConfig is merged
// into the others.
func dnsConfig(pod *v1.Pod, resolvConf string) (*runtimeapi.DNSConfig, error) {
	cfg := &runtimeapi.DNSConfig{}
	if pod.Spec.DNSPolicy != v1.DNSNone {
		host, err := ReadResolvConf(resolvConf)
		if err != nil {
			return nil, err
		}
		cfg = host
	}
	if d := pod.Spec.DNSConfig; d != nil {
		cfg.Servers = appendUnique(cfg.Servers, d.Nameservers...)
		cfg.Searches = appendUnique(cfg.Searches, d.Searches...)
		for _, o := range d.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			cfg.Options = setOption(cfg.Options, o.Name, opt)
		}
	}
	return cfg, nil
}

// ReadResolvConf reads nameserver, search/domain and options lines into the CRI form. A
// missing file gives an empty config, as on hosts without a resolver. The bench's direct-CRI
// floor uses it too, so both build the same sandbox.
func ReadResolvConf(path string) (*runtimeapi.DNSConfig, error) {
	cfg := &runtimeapi.DNSConfig{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read host resolver config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
			continue
		}
		switch fields[0] {
		case "nameserver":
			cfg.Servers = appendUnique(cfg.Servers, fields[1])
		case "search", "domain":
			cfg.Searches = fields[1:] // the last one wins, as in the resolver
		case "options":
			for _, o := range fields[1:] {
				cfg.Options = setOption(cfg.Options, strings.SplitN(o, ":", 2)[0], o)
			}
		}
	}
	return cfg, sc.Err()
}

func appendUnique(list []string, items ...string) []string {
	for _, it := range items {
		dup := false
		for _, have := range list {
			if have == it {
				dup = true
				break
			}
		}
		if !dup {
			list = append(list, it)
		}
	}
	return list
}

// setOption replaces an option of the same name or appends it.
func setOption(opts []string, name, opt string) []string {
	for i, o := range opts {
		if strings.SplitN(o, ":", 2)[0] == name {
			opts[i] = opt
			return opts
		}
	}
	return append(opts, opt)
}
