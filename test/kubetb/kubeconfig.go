package kubetb

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// The subset of a kubeconfig file (clientcmd's v1.Config) that the test bed writes. []byte
// fields marshal as base64, which is what the *-data keys hold.
type kubeconfig struct {
	APIVersion     string            `json:"apiVersion"`
	Kind           string            `json:"kind"`
	Clusters       []kubeconfigEntry `json:"clusters"`
	Users          []kubeconfigEntry `json:"users"`
	Contexts       []kubeconfigEntry `json:"contexts"`
	CurrentContext string            `json:"current-context"`
}

type kubeconfigEntry struct {
	Name    string             `json:"name"`
	Cluster *kubeconfigCluster `json:"cluster,omitempty"`
	User    *kubeconfigUser    `json:"user,omitempty"`
	Context *kubeconfigContext `json:"context,omitempty"`
}

type kubeconfigCluster struct {
	Server                   string `json:"server"`
	CertificateAuthorityData []byte `json:"certificate-authority-data"`
}

type kubeconfigUser struct {
	Token                 string `json:"token,omitempty"`
	ClientCertificateData []byte `json:"client-certificate-data,omitempty"`
	ClientKeyData         []byte `json:"client-key-data,omitempty"`
}

type kubeconfigContext struct {
	Cluster string `json:"cluster"`
	User    string `json:"user"`
}

// writeKubeconfig writes a self-contained kubeconfig (CA and credentials inline, so it can be
// copied anywhere) for user at path, readable by its owner only.
func (c *Cluster) writeKubeconfig(path, userName string, user kubeconfigUser) error {
	const clusterName = "kubetb"
	cfg := kubeconfig{
		APIVersion: "v1",
		Kind:       "Config",
		Clusters: []kubeconfigEntry{{Name: clusterName, Cluster: &kubeconfigCluster{
			Server: c.URL, CertificateAuthorityData: c.ca.certPEM}}},
		Users:          []kubeconfigEntry{{Name: userName, User: &user}},
		Contexts:       []kubeconfigEntry{{Name: clusterName, Context: &kubeconfigContext{Cluster: clusterName, User: userName}}},
		CurrentContext: clusterName,
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// NodeKubeconfig issues the credentials a real cluster gives the node called name (a client
// certificate for user system:node:<name> in group system:nodes, signed by the cluster CA) and
// writes a kubeconfig holding them; it returns its path, dir/nodes/<name>.kubeconfig. Under the
// Node authorizer and NodeRestriction, that identity may write only its own Node, its Lease and
// its pods' status, and read only what its pods reference. Calling it again for the same name
// issues a fresh certificate; the old one stays valid.
func (c *Cluster) NodeKubeconfig(name string) (string, error) {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("node name %q: %s", name, strings.Join(errs, "; "))
	}
	user := "system:node:" + name
	cert, err := c.ca.clientCert(user, "system:nodes")
	if err != nil {
		return "", fmt.Errorf("node %s credentials: %w", name, err)
	}
	dir := filepath.Join(c.Dir, "nodes")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("node %s credentials: %w", name, err)
	}
	path := filepath.Join(dir, name+".kubeconfig")
	if err := c.writeKubeconfig(path, user, kubeconfigUser{ClientCertificateData: cert.certPEM, ClientKeyData: cert.keyPEM}); err != nil {
		return "", fmt.Errorf("node %s credentials: %w", name, err)
	}
	return path, nil
}
