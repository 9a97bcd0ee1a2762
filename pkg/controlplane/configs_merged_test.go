package controlplane

import (
	"errors"
	"io"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient/kubeclienttest"
)

// newMergedForTest is a MergedConfigs over a ConfigStore holding fileObjects and a
// KubeConfigs (not running: every lookup is a GET) on a fake API server holding apiObjects,
// where GETs of the Secret "private" are Forbidden and of the Secret "down" fail as an
// unreachable server's.
func newMergedForTest(t *testing.T, fileObjects []any, apiObjects ...runtime.Object) *MergedConfigs {
	t.Helper()
	set := configSet{configMaps: map[string]*v1.ConfigMap{}, secrets: map[string]*v1.Secret{}}
	for _, o := range fileObjects {
		switch o := o.(type) {
		case *v1.ConfigMap:
			set.configMaps[o.Namespace+"/"+o.Name] = o
		case *v1.Secret:
			set.secrets[o.Namespace+"/"+o.Name] = o
		}
	}
	store := &ConfigStore{}
	store.replace(set)

	client := fake.NewClientset(apiObjects...)
	client.PrependReactor("get", "secrets", func(a clienttesting.Action) (bool, runtime.Object, error) {
		switch a.(clienttesting.GetAction).GetName() {
		case "private":
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "private",
				errors.New("no relationship found between node 'n1' and this object"))
		case "down":
			return true, nil, errors.New("connect: connection refused")
		}
		return false, nil, nil
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	kube, err := NewKubeConfigs(KubeConfigsConfig{Client: kubeclienttest.Wrap(client), Log: logrus.NewEntry(log)})
	if err != nil {
		t.Fatal(err)
	}
	return NewMergedConfigs(store, kube)
}

func TestMergedConfigsAskTheFileSourceFirst(t *testing.T) {
	m := newMergedForTest(t,
		[]any{apiConfigMap("ns", "both", "", map[string]string{"from": "file"}), apiSecret("ns", "static", "", map[string]string{"from": "file"})},
		apiConfigMap("ns", "both", "1", map[string]string{"from": "api"}),
		apiConfigMap("ns", "api-only", "2", map[string]string{"from": "api"}),
		apiSecret("ns", "api-secret", "3", map[string]string{"from": "api"}))

	tests := []struct {
		name string
		get  func() (map[string]string, error)
		want string
	}{
		{"in both: the file's", func() (map[string]string, error) {
			cm, err := m.GetConfigMap("ns", "both")
			return dataOf(cm, err)
		}, "file"},
		{"in the API only", func() (map[string]string, error) {
			cm, err := m.GetConfigMap("ns", "api-only")
			return dataOf(cm, err)
		}, "api"},
		{"a static pod's Secret", func() (map[string]string, error) {
			s, err := m.GetSecret("ns", "static")
			return secretDataOf(s, err)
		}, "file"},
		{"an API pod's Secret", func() (map[string]string, error) {
			s, err := m.GetSecret("ns", "api-secret")
			return secretDataOf(s, err)
		}, "api"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.get()
			if err != nil || data["from"] != tc.want {
				t.Fatalf("data %v, err %v; want from=%s", data, err, tc.want)
			}
		})
	}
}

func dataOf(cm *v1.ConfigMap, err error) (map[string]string, error) {
	if err != nil {
		return nil, err
	}
	return cm.Data, nil
}

func secretDataOf(s *v1.Secret, err error) (map[string]string, error) {
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out, nil
}

func TestMergedConfigsNotFoundOnlyWhenNeitherHasIt(t *testing.T) {
	m := newMergedForTest(t, nil)
	tests := []struct {
		name         string
		get          func() error
		wantErr      string
		wantNotFound bool
	}{
		{"a ConfigMap in neither", func() error { _, err := m.GetConfigMap("ns", "cfg"); return err },
			`configmap "cfg" not found`, true},
		{"a Secret in neither", func() error { _, err := m.GetSecret("ns", "sec"); return err },
			`secret "sec" not found`, true},
		// What the API server says to a static pod: no API pod of the node references it.
		{"a Secret the node may not read", func() error { _, err := m.GetSecret("ns", "private"); return err },
			`secret "private" not found`, true},
		// During an outage nothing is taken for absent: an optional reference is not skipped.
		{"the API server unreachable", func() error { _, err := m.GetSecret("ns", "down"); return err },
			`get secret ns/down: connect: connection refused`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.get()
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error = %v, want %s", err, tc.wantErr)
			}
			if errdefs.IsNotFound(err) != tc.wantNotFound {
				t.Fatalf("IsNotFound = %v, want %v", !tc.wantNotFound, tc.wantNotFound)
			}
		})
	}
}
