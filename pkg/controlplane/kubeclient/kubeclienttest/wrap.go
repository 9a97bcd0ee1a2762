// Package kubeclienttest lets tests drive the agent's kube code with client-go's fake
// clientset (k8s.io/client-go/kubernetes/fake): Wrap adapts any client-go clientset to
// kubeclient.Interface. It imports the full clientset, so only tests may import it; the
// agent's binary must not (cmd/nodeagent has a test that checks).
package kubeclienttest

import (
	"k8s.io/client-go/kubernetes"
	corev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
)

// Wrap returns cs as a kubeclient.Interface. Every call goes to cs unchanged, so reactors and
// recorded actions of a fake clientset see exactly what the agent asked for.
func Wrap(cs kubernetes.Interface) kubeclient.Interface { return clientset{cs} }

type clientset struct{ cs kubernetes.Interface }

func (c clientset) CoreV1() kubeclient.CoreV1Interface { return coreV1{c.cs.CoreV1()} }
func (c clientset) CoordinationV1() kubeclient.CoordinationV1Interface {
	return coordinationV1{c.cs}
}
func (c clientset) AuthenticationV1() kubeclient.AuthenticationV1Interface {
	return authenticationV1{c.cs}
}
func (c clientset) AuthorizationV1() kubeclient.AuthorizationV1Interface {
	return authorizationV1{c.cs}
}

// IsWatchListSemanticsUnSupported passes on the fake clientset's answer: it cannot stream a
// list through a watch, and informers built on the wrapped client must know it.
func (c clientset) IsWatchListSemanticsUnSupported() bool {
	u, ok := c.cs.(interface{ IsWatchListSemanticsUnSupported() bool })
	return ok && u.IsWatchListSemanticsUnSupported()
}

type coreV1 struct{ c corev1.CoreV1Interface }

func (g coreV1) Pods(ns string) kubeclient.PodInterface       { return g.c.Pods(ns) }
func (g coreV1) Nodes() kubeclient.NodeInterface              { return g.c.Nodes() }
func (g coreV1) Events(ns string) kubeclient.EventInterface   { return g.c.Events(ns) }
func (g coreV1) Secrets(ns string) kubeclient.SecretInterface { return g.c.Secrets(ns) }
func (g coreV1) ConfigMaps(ns string) kubeclient.ConfigMapInterface {
	return g.c.ConfigMaps(ns)
}
func (g coreV1) ServiceAccounts(ns string) kubeclient.ServiceAccountInterface {
	return g.c.ServiceAccounts(ns)
}

type coordinationV1 struct{ cs kubernetes.Interface }

func (g coordinationV1) Leases(ns string) kubeclient.LeaseInterface {
	return g.cs.CoordinationV1().Leases(ns)
}

type authenticationV1 struct{ cs kubernetes.Interface }

func (g authenticationV1) TokenReviews() kubeclient.TokenReviewInterface {
	return g.cs.AuthenticationV1().TokenReviews()
}

type authorizationV1 struct{ cs kubernetes.Interface }

func (g authorizationV1) SubjectAccessReviews() kubeclient.SubjectAccessReviewInterface {
	return g.cs.AuthorizationV1().SubjectAccessReviews()
}
