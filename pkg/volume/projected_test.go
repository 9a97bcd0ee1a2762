package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
)

func TestProjectedVolumeCombinesSources(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"app.conf": "conf"})
	env.source.setSecret("default", "tls", map[string]string{"tls.crt": "CRT", "tls.key": "KEY"})
	pod := testPod(v1.Volume{Name: "all", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
		DefaultMode: ptr[int32](0o440),
		Sources: []v1.VolumeProjection{
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}},
			{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "tls"}, Items: []v1.KeyToPath{
				{Key: "tls.key", Path: "tls/key", Mode: ptr[int32](0o400)},
			}}},
			{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{
				{Path: "podname", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			}}},
		},
	}}})
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginProjected, "all")
	if _, ok := env.mounter.size(dir); !ok {
		t.Fatal("a projected volume with a secret is not on tmpfs")
	}
	want := map[string]string{"app.conf": "conf", "tls/key": "KEY", "podname": "web"}
	if got := readVolume(t, dir); !maps.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	if m := fileMode(t, dir+"/app.conf"); m != 0o440 {
		t.Errorf("app.conf mode = %#o, want 0440", m)
	}
	if m := fileMode(t, dir+"/tls/key"); m != 0o400 {
		t.Errorf("tls/key mode = %#o, want 0400", m)
	}
}

func TestProjectedVolumeWithoutSecretIsOnDisk(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "cfg", map[string]string{"k": "v"})
	pod := testPod(v1.Volume{Name: "p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
		{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}},
	}}}})
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.mounter.size(env.volDir(pod, pluginProjected, "p")); ok {
		t.Fatal("configMap-only projected volume mounted a tmpfs")
	}
}

func TestProjectedVolumeErrors(t *testing.T) {
	tests := []struct {
		name     string
		sources  []v1.VolumeProjection
		wantErr  string
		notFound bool
	}{
		{"serviceAccountToken without a control plane",
			[]v1.VolumeProjection{{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token"}}},
			"serviceAccountToken needs a control plane (--kubeconfig)", false},
		{"a missing non-optional secret",
			[]v1.VolumeProjection{{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "db"}}}},
			`secret "db" not found`, true},
		{"two sources writing one path",
			[]v1.VolumeProjection{
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}}},
			}, `path "x": used by more than one item`, false},
		{"a file and a directory on one path",
			[]v1.VolumeProjection{
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "x/y", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}}},
			}, `paths "x" and "x/y" conflict`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			pod := testPod(v1.Volume{Name: "p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: tc.sources}}})
			_, err := env.m.SetUp(context.Background(), pod)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), `volume "p": `) {
				t.Fatalf("SetUp error = %v, want `volume \"p\": ...%s`", err, tc.wantErr)
			}
			if errdefs.IsNotFound(err) != tc.notFound {
				t.Fatalf("IsNotFound = %v, want %v", !tc.notFound, tc.notFound)
			}
		})
	}
}

// fakeTokens issues "token-<n>" for each call and records what it was asked.
type fakeTokens struct {
	mu    sync.Mutex
	calls []*v1.ServiceAccountTokenProjection
	pods  []*v1.Pod
	err   error
}

func (f *fakeTokens) ServiceAccountToken(pod *v1.Pod, p *v1.ServiceAccountTokenProjection) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, p)
	f.pods = append(f.pods, pod)
	if f.err != nil {
		return "", f.err
	}
	return fmt.Sprintf("token-%d", len(f.calls)), nil
}

// newTokenManager is env's Manager with tokens as its TokenSource.
func newTokenManager(t *testing.T, env *testEnv, tokens TokenSource) *Manager {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := New(Config{RootDir: env.root, Source: env.source, Tokens: tokens, Mounter: env.mounter, Log: logrus.NewEntry(log)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// kubeAPIAccess is the volume the ServiceAccount admission plugin adds to every pod.
func kubeAPIAccess() v1.Volume {
	return v1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
		DefaultMode: ptr[int32](420),
		Sources: []v1.VolumeProjection{
			{ServiceAccountToken: &v1.ServiceAccountTokenProjection{ExpirationSeconds: ptr[int64](3607), Path: "token"}},
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}},
			}}},
		},
	}}}
}

func TestProjectedServiceAccountTokenIsWrittenWithTheVolumeMode(t *testing.T) {
	tests := []struct {
		name        string
		defaultMode *int32
		wantMode    os.FileMode
	}{
		{"no defaultMode", nil, 0o644},
		{"defaultMode 0600", ptr[int32](0o600), 0o600},
		{"defaultMode 420 (kube-api-access)", ptr[int32](420), 0o644},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			tokens := &fakeTokens{}
			m := newTokenManager(t, env, tokens)
			proj := &v1.ServiceAccountTokenProjection{Audience: "vault", ExpirationSeconds: ptr[int64](600), Path: "sa/token"}
			pod := testPod(v1.Volume{Name: "tok", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
				DefaultMode: tc.defaultMode,
				Sources:     []v1.VolumeProjection{{ServiceAccountToken: proj}},
			}}})
			if _, err := m.SetUp(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
			dir := env.volDir(pod, pluginProjected, "tok")
			if got := readVolume(t, dir); !maps.Equal(got, map[string]string{"sa/token": "token-1"}) {
				t.Fatalf("files = %v, want sa/token = token-1", got)
			}
			if m := fileMode(t, dir+"/sa/token"); m != tc.wantMode {
				t.Errorf("token mode = %#o, want %#o", m, tc.wantMode)
			}
			if _, ok := env.mounter.size(dir); !ok {
				t.Error("a projected volume with a token is not on tmpfs")
			}
			if len(tokens.calls) != 1 || tokens.calls[0] != proj || tokens.pods[0].UID != pod.UID {
				t.Errorf("token source asked %v for pods %v, want the projection once for pod %s", tokens.calls, tokens.pods, pod.UID)
			}
		})
	}
}

func TestProjectedKubeAPIAccessVolume(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "kube-root-ca.crt", map[string]string{"ca.crt": "CA"})
	m := newTokenManager(t, env, &fakeTokens{})
	pod := testPod(kubeAPIAccess())
	if _, err := m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginProjected, "kube-api-access-x7k2p")
	want := map[string]string{"token": "token-1", "ca.crt": "CA", "namespace": "default"}
	if got := readVolume(t, dir); !maps.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	for _, f := range []string{"token", "ca.crt", "namespace"} {
		if m := fileMode(t, dir+"/"+f); m != 0o644 {
			t.Errorf("%s mode = %#o, want 0644", f, m)
		}
	}
}

// The token source rotates tokens; each sync writes what it returns, so a new token replaces
// the old one in place.
func TestProjectedServiceAccountTokenRotates(t *testing.T) {
	env := newTestEnv(t)
	env.source.setConfigMap("default", "kube-root-ca.crt", map[string]string{"ca.crt": "CA"})
	m := newTokenManager(t, env, &fakeTokens{})
	pod := testPod(kubeAPIAccess())
	for i := 1; i <= 2; i++ {
		if _, err := m.SetUp(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
		got := readVolume(t, env.volDir(pod, pluginProjected, "kube-api-access-x7k2p"))["token"]
		if want := fmt.Sprintf("token-%d", i); got != want {
			t.Fatalf("sync %d: token = %q, want %q", i, got, want)
		}
	}
}

func TestProjectedServiceAccountTokenErrors(t *testing.T) {
	env := newTestEnv(t)
	tokens := &fakeTokens{err: errors.New(`serviceaccounts "default" is forbidden`)}
	m := newTokenManager(t, env, tokens)
	pod := testPod(v1.Volume{Name: "p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
		{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token"}},
	}}}})
	_, err := m.SetUp(context.Background(), pod)
	want := `volume "p": projected sources[0]: serviceAccountToken "token": serviceaccounts "default" is forbidden`
	if err == nil || err.Error() != want {
		t.Fatalf("SetUp error = %v, want %s", err, want)
	}
	if !errors.Is(err, tokens.err) {
		t.Error("the token source's error is not kept as the cause")
	}

	tokens.err = nil
	pod.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken.Path = "../token"
	if _, err := m.SetUp(context.Background(), pod); err == nil || !strings.Contains(err.Error(), "serviceAccountToken: ") {
		t.Fatalf("SetUp with path ../token: error = %v, want a path error", err)
	}
}
