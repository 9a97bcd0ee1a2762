package controlplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
	"github.com/nodeagent/nodeagent/test/kubetb"
)

// configsTestLog sends the test bed's progress lines to the test log.
type configsTestLog struct{ t *testing.T }

func (w configsTestLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

const configsTestObjects = `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: cfgtest}
data: {k: v1}
---
apiVersion: v1
kind: Secret
metadata: {name: sec, namespace: cfgtest}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Secret
metadata: {name: unreferenced, namespace: cfgtest}
stringData: {password: nope}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: cfgtest}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox:1.36
    envFrom: [{secretRef: {name: sec}}]
    volumeMounts: [{name: cfg, mountPath: /etc/cfg}]
  volumes:
  - {name: cfg, configMap: {name: cfg}}
`

// TestKubeConfigsAgainstARealAPIServer runs KubeConfigs and Tokens with node n1's own
// credentials against a real kube-apiserver under the Node authorizer: n1 reads and watches
// what its pod references, issues the pod's token, and is refused everything else.
func TestKubeConfigsAgainstARealAPIServer(t *testing.T) {
	if _, err := kubetb.Binaries(); errors.Is(err, kubetb.ErrNotBuilt) {
		t.Skipf("skipping the real API server test (run hack/install-kube.sh to build it): %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := kubetb.Start(ctx, t.TempDir(), configsTestLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	if _, err := c.Kubectl(ctx, "create", "namespace", "cfgtest"); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureNamespaceDefaults(ctx, "cfgtest"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KubectlAs(ctx, c.AdminKubeconfig, configsTestObjects, "create", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	kubeconfig, err := c.NodeKubeconfig("n1")
	if err != nil {
		t.Fatal(err)
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubeclient.New(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	// The pod as n1 sees it, with the kube-api-access volume the ServiceAccount admission added.
	pod, err := client.CoreV1().Pods("cfgtest").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var tokenProj *v1.ServiceAccountTokenProjection
	for _, vol := range pod.Spec.Volumes {
		if strings.HasPrefix(vol.Name, "kube-api-access-") && vol.Projected != nil {
			for _, s := range vol.Projected.Sources {
				if s.ServiceAccountToken != nil {
					tokenProj = s.ServiceAccountToken
				}
			}
		}
	}
	if tokenProj == nil {
		t.Fatalf("the pod has no kube-api-access volume with a token: %+v", pod.Spec.Volumes)
	}

	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	log.SetOutput(configsTestLog{t})
	changes := make(chan struct{}, 100)
	configs, err := NewKubeConfigs(KubeConfigsConfig{
		Client:         client,
		Log:            logrus.NewEntry(log),
		OnChange:       func() { changes <- struct{}{} },
		BackoffInitial: 100 * time.Millisecond,
		BackoffMax:     time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	configs.Track([]*v1.Pod{pod})
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		configs.Run(runCtx)
	}()
	defer func() {
		stopRun()
		<-runDone
	}()

	// The Node authorizer learns of the pod asynchronously: poll with a deadline.
	pollUntilConfigs(t, 10*time.Second, "n1 reads its pod's ConfigMap and Secret", func() error {
		cm, err := configs.GetConfigMap("cfgtest", "cfg")
		if err != nil {
			return err
		}
		if cm.Data["k"] != "v1" {
			return errors.New("ConfigMap data k = " + cm.Data["k"])
		}
		sec, err := configs.GetSecret("cfgtest", "sec")
		if err != nil {
			return err
		}
		if string(sec.Data["password"]) != "hunter2" {
			return errors.New("Secret data is not the created one")
		}
		if _, err := configs.GetConfigMap("cfgtest", "kube-root-ca.crt"); err != nil {
			return err
		}
		return nil
	})
	// The watches have listed their objects (cfg, sec, kube-root-ca.crt).
	for range 3 {
		select {
		case <-changes:
		case <-time.After(10 * time.Second):
			t.Fatal("the watches did not sync")
		}
	}

	// An admin edit reaches the watch, OnChange, and lookups.
	if _, err := c.Kubectl(ctx, "-n", "cfgtest", "patch", "configmap", "cfg", "--type=merge", "-p", `{"data":{"k":"v2"}}`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("an edit of a watched ConfigMap did not call OnChange within 5 s")
	}
	pollUntilConfigs(t, 5*time.Second, "the edited ConfigMap is served", func() error {
		cm, err := configs.GetConfigMap("cfgtest", "cfg")
		if err != nil {
			return err
		}
		if cm.Data["k"] != "v2" {
			return errors.New("ConfigMap data k = " + cm.Data["k"])
		}
		return nil
	})

	// A Secret the pod does not reference: the node's credentials are refused it.
	_, err = configs.GetSecret("cfgtest", "unreferenced")
	if !apierrors.IsForbidden(err) {
		t.Fatalf("n1 reading a Secret its pod does not reference: %v, want Forbidden", err)
	}
	// Through the merged source (an empty file store first) that is "not found", as a static
	// pod sees the API server; the pod's own objects come from the API.
	merged := NewMergedConfigs(&ConfigStore{}, configs)
	if _, err := merged.GetSecret("cfgtest", "unreferenced"); !errdefs.IsNotFound(err) || err.Error() != `secret "unreferenced" not found` {
		t.Fatalf("merged GetSecret of an unreferenced Secret: %v, want NotFound", err)
	}
	if cm, err := merged.GetConfigMap("cfgtest", "cfg"); err != nil || cm.Data["k"] != "v2" {
		t.Fatalf("merged GetConfigMap = %v, %v", cm, err)
	}

	// The pod's token, through the TokenRequest API with n1's credentials.
	tokens, err := NewTokens(TokensConfig{Client: client, Log: logrus.NewEntry(log)})
	if err != nil {
		t.Fatal(err)
	}
	token, err := tokens.ServiceAccountToken(pod, tokenProj)
	if err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(token, "."); len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		t.Fatalf("token %q is not a JWT (three non-empty parts)", token)
	}
	if again, err := tokens.ServiceAccountToken(pod, tokenProj); err != nil || again != token {
		t.Fatalf("a second read: %v, and a different token: %v", err, again != token)
	}
	// A token for a pod that is not n1's is refused.
	other := pod.DeepCopy()
	other.Name, other.UID = "not-mine", "00000000-0000-0000-0000-000000000000"
	if _, err := tokens.ServiceAccountToken(other, tokenProj); err == nil {
		t.Fatal("n1 got a token bound to a pod that does not exist")
	}
}

// eventually polls f until it returns nil, failing the test with its last error at the
// deadline.
func pollUntilConfigs(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
