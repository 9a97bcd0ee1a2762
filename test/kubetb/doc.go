// Package kubetb runs a real Kubernetes control plane for tests: etcd and kube-apiserver as
// hack/install-kube.sh builds them, on 127.0.0.1 with certificates generated per cluster, and
// kubectl to drive it. The API server is configured the way real clusters configure node
// credentials (Node and RBAC authorizers, the NodeRestriction and ServiceAccount admission
// plugins, client certificates from the cluster CA), so a node agent tested against it meets
// the same refusals it would in production.
//
// A test that needs it skips unless hack/install-kube.sh has built the binaries:
//
//	if _, err := kubetb.Binaries(); errors.Is(err, kubetb.ErrNotBuilt) {
//		t.Skip(err)
//	}
//	c, err := kubetb.Start(ctx, t.TempDir(), out)
//	if err != nil {
//		t.Fatal(err)
//	}
//	t.Cleanup(func() { _ = c.Stop() })
//	kubeconfig, err := c.NodeKubeconfig("n1") // for the agent's --kubeconfig
//	_, err = c.Kubectl(ctx, "get", "node", "n1")
//
// No kube-controller-manager or scheduler runs: pods are bound by setting spec.nodeName, and
// EnsureNamespaceDefaults creates the per-namespace objects the controller manager would.
//
//	Start: PKI + admin kubeconfig -> etcd (wait /health) -> kube-apiserver (wait /readyz,
//	       system namespaces) -> defaults in the system namespaces
//	Stop:  kube-apiserver, then etcd; SIGTERM by PID, SIGKILL after 10 s
package kubetb
