package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/nodeapi"
)

// The CRI client is what the node API streams and reads logs through.
var _ nodeapi.Runtime = (*cri.Client)(nil)

// nodeAPIConfig is the node API's part of the configuration (the kubelet's :10250 server).
// It serves only on a node of a control plane (--kubeconfig).
type nodeAPIConfig struct {
	Address      string // host:port; the port is what the Node reports as its kubelet endpoint
	TLSCertFile  string
	TLSKeyFile   string
	ClientCAFile string
}

// registerNodeAPIFlags adds the node API's flags (and so its config file keys) to fs.
func registerNodeAPIFlags(fs *pflag.FlagSet, c *nodeAPIConfig) {
	fs.StringVar(&c.Address, "node-api-address", ":10250", "address of the node API (logs, exec, attach, port-forward for the API server); its port is the Node's kubelet endpoint. Served only with --kubeconfig")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", "", "the node API's serving certificate (PEM); default: a self-signed one kept under <root-dir>/pki")
	fs.StringVar(&c.TLSKeyFile, "tls-private-key-file", "", "the key of --tls-cert-file (PEM)")
	fs.StringVar(&c.ClientCAFile, "client-ca-file", "", "CA bundle (PEM) that signs the client certificates the node API accepts (the API server's kubelet client certificate); empty: bearer tokens only")
}

// validate checks the node API's values, naming the key.
func (c *nodeAPIConfig) validate() error {
	_, port, err := net.SplitHostPort(c.Address)
	if err != nil {
		return fmt.Errorf("node-api-address: %q is not host:port: %v", c.Address, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("node-api-address: %q: the port must be 1-65535 (the Node reports it, so it cannot be chosen at random)", c.Address)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("tls-cert-file and tls-private-key-file go together: give both or neither")
	}
	for key, p := range map[string]string{"tls-cert-file": c.TLSCertFile, "tls-private-key-file": c.TLSKeyFile, "client-ca-file": c.ClientCAFile} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%s: %q must be an absolute path", key, p)
		}
	}
	return nil
}

// port is the port of the validated address: the Node's daemonEndpoints.kubeletEndpoint.
func (c *nodeAPIConfig) port() int {
	_, p, _ := net.SplitHostPort(c.Address)
	n, _ := strconv.Atoi(p)
	return n
}

// nodeAPIDeps is what the node API takes from the rest of the agent.
type nodeAPIDeps struct {
	NodeName   string
	NodeIP     string // "" if unknown; a SAN of the self-signed certificate otherwise
	RootDir    string
	PodLogsDir string
	Client     kubeclient.Interface // TokenReviews and SubjectAccessReviews, as the node
	Runtime    nodeapi.Runtime
	Pods       func() []*v1.Pod
	// Healthz is the node API's /healthz check: the same checks as the debug server's.
	Healthz func(ctx context.Context) error
	Log     *logrus.Entry
}

// startNodeAPI builds the node API, binds its address and serves it in the background until
// ctx ends. Errors are those of the start (certificate, CA bundle, address); a serving
// error later is logged.
func startNodeAPI(ctx context.Context, c *nodeAPIConfig, d nodeAPIDeps) error {
	names := []string{d.NodeName, "localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(d.NodeIP); ip != nil && !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	if host, _, _ := net.SplitHostPort(c.Address); host != "" {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	}
	log := d.Log.WithField("component", "nodeapi")
	srv, err := nodeapi.New(nodeapi.Config{
		NodeName:        d.NodeName,
		Addr:            c.Address,
		Log:             log,
		Pods:            d.Pods,
		Runtime:         d.Runtime,
		PodLogsDir:      d.PodLogsDir,
		CertFile:        c.TLSCertFile,
		KeyFile:         c.TLSKeyFile,
		CertDir:         filepath.Join(d.RootDir, "pki"),
		SelfSignedNames: names,
		SelfSignedIPs:   ips,
		ClientCAFile:    c.ClientCAFile,
		Healthz:         d.Healthz,
		Tokens:          d.Client.AuthenticationV1().TokenReviews(),
		Access:          d.Client.AuthorizationV1().SubjectAccessReviews(),
	})
	if err != nil {
		return err
	}
	l, err := srv.Listen()
	if err != nil {
		return fmt.Errorf("node-api-address: %w", err)
	}
	go func() {
		if err := srv.Serve(ctx, l); err != nil {
			log.WithError(err).Error("the node API stopped")
		}
	}()
	return nil
}
