package kubetb

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// KubectlError is a kubectl run that failed.
type KubectlError struct {
	Args   []string
	Stderr string // what kubectl printed, e.g. "Error from server (Forbidden): ..."
	Err    error  // from exec: the exit status, or why kubectl did not run
}

func (e *KubectlError) Error() string {
	return fmt.Sprintf("kubectl %s: %v: %s", strings.Join(e.Args, " "), e.Err, strings.TrimSpace(e.Stderr))
}

func (e *KubectlError) Unwrap() error { return e.Err }

// serverErrorRE matches how kubectl reports an API error: "Error from server (<Reason>): ".
var serverErrorRE = regexp.MustCompile(`(?m)^Error from server \(([A-Za-z]+)\)`)

// Reason is the API status reason kubectl reported (metav1.StatusReasonForbidden,
// StatusReasonAlreadyExists, ...), or "" when the failure did not come from the API server.
func (e *KubectlError) Reason() metav1.StatusReason {
	if m := serverErrorRE.FindStringSubmatch(e.Stderr); m != nil {
		return metav1.StatusReason(m[1])
	}
	return ""
}

// Kubectl runs the built kubectl as the cluster admin (system:masters) and returns its
// standard output; a failure is a *KubectlError.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.KubectlAs(ctx, c.AdminKubeconfig, "", args...)
}

// KubectlAs runs the built kubectl with kubeconfig (AdminKubeconfig, or one from
// NodeKubeconfig) and stdin as its standard input, for `-f -`; it returns the standard
// output. A failure is a *KubectlError.
func (c *Cluster) KubectlAs(ctx context.Context, kubeconfig, stdin string, args ...string) (string, error) {
	// A discovery cache of its own: another cluster may have had the same URL.
	full := append([]string{"--kubeconfig=" + kubeconfig, "--cache-dir=" + filepath.Join(c.Dir, "kubectl-cache")}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), full...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &KubectlError{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// rootCADescription is the annotation kube-controller-manager's root CA publisher puts on
// kube-root-ca.crt.
const rootCADescription = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal " +
	"endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across " +
	"distributions of Kubernetes clusters."

// EnsureNamespaceDefaults creates in each namespace (which must exist) what
// kube-controller-manager would, since none runs here: the `default` ServiceAccount, without
// which the ServiceAccount admission plugin rejects every pod, and the `kube-root-ca.crt`
// ConfigMap (key ca.crt: the cluster CA) that the pods' kube-api-access volumes project.
// Idempotent: it applies them server-side. Start has done it for the system namespaces.
func (c *Cluster) EnsureNamespaceDefaults(ctx context.Context, namespaces ...string) error {
	if len(namespaces) == 0 {
		return nil
	}
	var manifest []byte
	for _, ns := range namespaces {
		for _, obj := range []any{
			&v1.ServiceAccount{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
				ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns},
			},
			&v1.ConfigMap{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: ns,
					Annotations: map[string]string{"kubernetes.io/description": rootCADescription}},
				Data: map[string]string{"ca.crt": string(c.ca.certPEM)},
			},
		} {
			b, err := yaml.Marshal(obj)
			if err != nil {
				return fmt.Errorf("namespace defaults: %w", err)
			}
			manifest = append(append(manifest, "---\n"...), b...)
		}
	}
	if _, err := c.KubectlAs(ctx, c.AdminKubeconfig, string(manifest), "apply", "--server-side", "--force-conflicts",
		"--field-manager=kube-controller-manager", "-f", "-"); err != nil {
		return fmt.Errorf("namespace defaults in %s: %w", strings.Join(namespaces, ", "), err)
	}
	return nil
}
