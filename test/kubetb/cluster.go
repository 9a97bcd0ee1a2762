package kubetb

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

const (
	// serviceCIDR is --service-cluster-ip-range; the API server takes its first address.
	serviceCIDR = "10.96.0.0/16"
	// serviceAccountIssuer is also the audience of service-account tokens, as in kubeadm.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// startTimeout bounds Start when its context has no deadline.
	startTimeout = 2 * time.Minute
	// KubeletClientUser is who kube-apiserver is to a node's API (logs, exec, port-forward):
	// the CN of its kubelet client certificate, signed by the cluster CA as in kubeadm.
	// Start binds it to system:kubelet-api-admin.
	KubeletClientUser = "kube-apiserver-kubelet-client"
)

// systemNamespaces are created by kube-apiserver itself; Start gives them their defaults.
var systemNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// Cluster is a running etcd and kube-apiserver. Everything it writes is under Dir:
// pki/, the admin kubeconfig, nodes/<name>.kubeconfig, etcd/ (data), <process>.log and
// <process>.pid.
type Cluster struct {
	Dir             string
	URL             string // https://127.0.0.1:<port>
	CAFile          string // the cluster CA (PEM): it signs the serving cert and every client cert
	AdminKubeconfig string // user "admin" in group system:masters, by bearer token
	AdminToken      string
	BinDir          string // kube-apiserver, kubectl and etcd

	ca     *keyPair
	client *http.Client // trusts the CA, for readiness checks

	mu    sync.Mutex
	procs []*process // in start order; guarded by mu; nil once stopped

	apiserverArgs []string // for StartAPIServer
}

// options are the knobs tests of this package turn; Start uses the zero value.
type options struct {
	extraAPIServerArgs []string
}

// Start starts a cluster with its state under dir, which must not hold an earlier one, and
// waits until it serves. Progress lines go to out (may be nil); the processes' own output goes to
// dir/etcd.log and dir/kube-apiserver.log. ctx bounds the start only (two minutes if it has no
// deadline): the cluster runs until Stop. On error nothing that Start started is left running.
func Start(ctx context.Context, dir string, out io.Writer) (*Cluster, error) {
	return start(ctx, dir, out, options{})
}

func start(ctx context.Context, dir string, out io.Writer, opts options) (*Cluster, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	if out == nil {
		out = io.Discard
	}
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd")); err == nil {
		return nil, fmt.Errorf("start cluster: %s already holds a cluster's etcd data", dir)
	}
	c := &Cluster{Dir: dir, BinDir: bin}
	if err := c.start(ctx, out, opts); err != nil {
		if stopErr := c.stop(false); stopErr != nil {
			fmt.Fprintf(out, "kubetb: cleaning up after a failed start: %v\n", stopErr)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, out io.Writer, opts options) error {
	began := time.Now()
	pki := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	files, err := c.writePKI(pki)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	c.AdminKubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := c.writeKubeconfig(c.AdminKubeconfig, "admin", kubeconfigUser{Token: c.AdminToken}); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}

	// etcd on loopback without TLS, as in Kubernetes' own integration tests. fsync is off:
	// the data dies with the test.
	etcd, err := c.startProcess("etcd", filepath.Join(c.BinDir, "etcd"),
		"--name=kubetb",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetb="+peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, "etcd /health", etcd, func(ctx context.Context) error {
		return c.get(ctx, etcdURL+"/health", false)
	}); err != nil {
		return err
	}
	fmt.Fprintf(out, "kubetb: etcd (pid %d) serves %s; log %s\n", etcd.pid(), etcdURL, etcd.log)

	args := []string{
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + pki,
		"--tls-cert-file=" + files.servingCert, "--tls-private-key-file=" + files.servingKey,
		"--client-ca-file=" + c.CAFile,
		"--token-auth-file=" + files.tokens,
		"--authorization-mode=Node,RBAC",
		// ServiceAccount is on by default; named so that no default change can drop it.
		"--enable-admission-plugins=NodeRestriction,ServiceAccount",
		"--service-account-issuer=" + serviceAccountIssuer,
		"--api-audiences=" + serviceAccountIssuer,
		"--service-account-key-file=" + files.serviceAccountPub,
		"--service-account-signing-key-file=" + files.serviceAccountKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		// No endpoints for the kubernetes Service: nothing in the cluster dials it.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		// How kube-apiserver reaches a node's API: its kubelet client certificate, and the
		// node's InternalIP (the host's address, or --node-ip) before its host name.
		"--kubelet-client-certificate=" + files.kubeletClientCert, "--kubelet-client-key=" + files.kubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--etcd-servers=" + etcdURL,
		"--profiling=false",
	}
	c.apiserverArgs = append(args, opts.extraAPIServerArgs...)
	apiserver, err := c.startAPIServer(ctx)
	if err != nil {
		return err
	}
	// The API server creates its system namespaces shortly after it turns ready.
	if err := c.waitFor(ctx, "system namespaces", apiserver, func(ctx context.Context) error {
		for _, ns := range systemNamespaces {
			if err := c.get(ctx, c.URL+"/api/v1/namespaces/"+ns, true); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := c.EnsureNamespaceDefaults(ctx, systemNamespaces...); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	if err := c.grantKubeletAPI(ctx); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	fmt.Fprintf(out, "kubetb: kube-apiserver (pid %d) ready at %s after %v; log %s\n",
		apiserver.pid(), c.URL, time.Since(began).Round(10*time.Millisecond), apiserver.log)
	return nil
}

// pkiFiles are the paths writePKI wrote, besides the CA.
type pkiFiles struct {
	servingCert, servingKey              string
	kubeletClientCert, kubeletClientKey  string
	serviceAccountKey, serviceAccountPub string
	tokens                               string
}

// writePKI generates the cluster CA, the API server's serving certificate, the
// service-account key pair and the admin token, and writes them under dir.
func (c *Cluster) writePKI(dir string) (pkiFiles, error) {
	var f pkiFiles
	ca, err := newCA("kubetb-ca")
	if err != nil {
		return f, err
	}
	_, serviceNet, err := net.ParseCIDR(serviceCIDR)
	if err != nil {
		return f, err
	}
	serviceIP := serviceNet.IP.To4()
	serviceIP[3]++
	serving, err := ca.servingCert(serviceIP)
	if err != nil {
		return f, err
	}
	kubeletClient, err := ca.clientCert(KubeletClientUser)
	if err != nil {
		return f, err
	}
	saKey, saPub, err := serviceAccountKeys()
	if err != nil {
		return f, err
	}
	token := make([]byte, 24)
	if _, err := rand.Read(token); err != nil {
		return f, fmt.Errorf("generate admin token: %w", err)
	}
	c.ca, c.AdminToken = ca, hex.EncodeToString(token)
	c.CAFile = filepath.Join(dir, "ca.crt")
	f = pkiFiles{
		servingCert:       filepath.Join(dir, "apiserver.crt"),
		servingKey:        filepath.Join(dir, "apiserver.key"),
		kubeletClientCert: filepath.Join(dir, "apiserver-kubelet-client.crt"),
		kubeletClientKey:  filepath.Join(dir, "apiserver-kubelet-client.key"),
		serviceAccountKey: filepath.Join(dir, "sa.key"),
		serviceAccountPub: filepath.Join(dir, "sa.pub"),
		tokens:            filepath.Join(dir, "tokens.csv"),
	}
	for path, data := range map[string][]byte{
		c.CAFile:                     ca.certPEM,
		filepath.Join(dir, "ca.key"): ca.keyPEM,
		f.servingCert:                serving.certPEM,
		f.servingKey:                 serving.keyPEM,
		f.kubeletClientCert:          kubeletClient.certPEM,
		f.kubeletClientKey:           kubeletClient.keyPEM,
		f.serviceAccountKey:          saKey,
		f.serviceAccountPub:          saPub,
		f.tokens:                     []byte(c.AdminToken + ",admin,admin,system:masters\n"), // token,user,uid,groups
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return f, fmt.Errorf("write PKI: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	c.client = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
	}
	return f, nil
}

// grantKubeletAPI lets kube-apiserver's kubelet client identity use every node's API, as
// kubeadm binds it: without it a node that authorizes through SubjectAccessReview refuses
// kubectl logs and exec.
func (c *Cluster) grantKubeletAPI(ctx context.Context) error {
	manifest := `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kube-apiserver-kubelet-api-admin
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: ` + KubeletClientUser + "\n"
	if _, err := c.KubectlAs(ctx, c.AdminKubeconfig, manifest, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("grant the kubelet API to %s: %w", KubeletClientUser, err)
	}
	return nil
}

// startProcess starts a control plane process and records it for Stop.
func (c *Cluster) startProcess(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(c.Dir, name, bin, args...)
	if p != nil {
		c.mu.Lock()
		c.procs = append(c.procs, p)
		c.mu.Unlock()
	}
	return p, err
}

// waitFor polls check every 100 ms until it succeeds, p exits or ctx ends.
func (c *Cluster) waitFor(ctx context.Context, what string, p *process, check func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if dead, exitErr := p.exited(); dead {
			return fmt.Errorf("wait for %s: %w", what, exitErr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v); %s log ends with:\n%s", what, ctx.Err(), err, p.name, p.logTail())
		case <-tick.C:
		}
	}
}

// get fails unless GET url answers 200; asAdmin adds the admin token.
func (c *Cluster) get(ctx context.Context, url string, asAdmin bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if asAdmin {
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

func (c *Cluster) startAPIServer(ctx context.Context) (*process, error) {
	apiserver, err := c.startProcess("kube-apiserver", filepath.Join(c.BinDir, "kube-apiserver"), c.apiserverArgs...)
	if err != nil {
		return nil, err
	}
	if err := c.waitFor(ctx, "kube-apiserver /readyz", apiserver, func(ctx context.Context) error {
		return c.get(ctx, c.URL+"/readyz", true)
	}); err != nil {
		return nil, err
	}
	return apiserver, nil
}

// StopAPIServer kills kube-apiserver only (SIGKILL, by its PID), as a crash or an outage
// would: its graceful shutdown waits for open watches, which is not what an outage looks
// like to a node. etcd keeps the cluster's state. StartAPIServer brings it back.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	var api *process
	for i, p := range c.procs {
		if p.name == "kube-apiserver" {
			api = p
			c.procs = append(c.procs[:i:i], c.procs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if api == nil {
		return errors.New("stop kube-apiserver: it is not running")
	}
	return api.kill()
}

// StartAPIServer starts kube-apiserver again with the flags it had, on the same port, and
// waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	_, err := c.startAPIServer(ctx)
	return err
}

// Stop stops kube-apiserver, then etcd, each by its PID: SIGTERM, then SIGKILL after 10 s.
// It reports a process that had died before Stop or that needed SIGKILL. Safe to call more
// than once; the files under Dir stay.
func (c *Cluster) Stop() error { return c.stop(true) }

// stop stops the processes, kube-apiserver first; reportDead says whether a process that had
// already exited is an error (not after a failed start, which reported it).
func (c *Cluster) stop(reportDead bool) error {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].stop(reportDead))
	}
	return errors.Join(errs...)
}

// freePorts returns n distinct loopback ports that were free a moment ago. Another process
// may take one before the control plane binds it; Start then fails with the bind error.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// MainSetup is the setup a TestMain hands to the e2e framework (framework.MainWith): it
// starts a cluster in a fresh temp dir, gives it to set, and returns what stops it and
// removes the dir.
func MainSetup(set func(*Cluster)) func() (func(), error) {
	return func() (func(), error) {
		dir, err := os.MkdirTemp("", "nodeagent-kubetb-")
		if err != nil {
			return nil, err
		}
		c, err := Start(context.Background(), filepath.Join(dir, "cluster"), os.Stderr)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("control plane: %w", err)
		}
		set(c)
		return func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "kubetb: stop the control plane: %v\n", err)
			}
			os.RemoveAll(dir)
		}, nil
	}
}
