package controlplane

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The store is what pkg/volume's ConfigSource asks for (declared there; not imported here).
var _ interface {
	GetConfigMap(namespace, name string) (*v1.ConfigMap, error)
	GetSecret(namespace, name string) (*v1.Secret, error)
} = (*ConfigStore)(nil)

func testConfigSet(value string) configSet {
	var set configSet
	set.add(parsedConfig{configMap: &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"},
		Data:       map[string]string{"k": value},
	}})
	set.add(parsedConfig{secret: &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "kube-system"},
		Data:       map[string][]byte{"password": []byte(value)},
	}})
	return set
}

func TestConfigStoreGet(t *testing.T) {
	var s ConfigStore
	if !s.replace(testConfigSet("v1")) {
		t.Fatal("replace into an empty store reported no change")
	}

	cm, err := s.GetConfigMap("default", "app")
	if err != nil || cm.Data["k"] != "v1" {
		t.Fatalf("GetConfigMap = %v, %v", cm, err)
	}
	sec, err := s.GetSecret("kube-system", "creds")
	if err != nil || string(sec.Data["password"]) != "v1" {
		t.Fatalf("GetSecret = %v, %v", sec, err)
	}

	// Callers get copies: changing one changes nothing in the store.
	cm.Data["k"] = "changed"
	sec.Data["password"][0] = 'X'
	cm2, _ := s.GetConfigMap("default", "app")
	sec2, _ := s.GetSecret("kube-system", "creds")
	if cm2.Data["k"] != "v1" || string(sec2.Data["password"]) != "v1" {
		t.Errorf("a caller's change reached the store: %q, %q", cm2.Data["k"], sec2.Data["password"])
	}

	tests := []struct {
		name    string
		get     func() error
		wantMsg string
	}{
		{"configmap of another namespace", func() error { _, err := s.GetConfigMap("kube-system", "app"); return err }, `configmap "app" not found`},
		{"absent configmap", func() error { _, err := s.GetConfigMap("default", "nope"); return err }, `configmap "nope" not found`},
		{"absent secret", func() error { _, err := s.GetSecret("default", "creds"); return err }, `secret "creds" not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.get()
			if !errdefs.IsNotFound(err) || !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("error %v is not of class NotFound", err)
			}
			if err == nil || err.Error() != tc.wantMsg {
				t.Errorf("error = %v, want %q", err, tc.wantMsg)
			}
		})
	}
}

func TestConfigStoreReplaceReportsOnlyChanges(t *testing.T) {
	var s ConfigStore
	steps := []struct {
		name string
		set  configSet
		want bool
	}{
		{"empty into empty", configSet{}, false},
		{"objects added", testConfigSet("v1"), true},
		{"equal content in new objects", testConfigSet("v1"), false},
		{"content changed", testConfigSet("v2"), true},
		{"objects removed", configSet{}, true},
	}
	for _, st := range steps {
		if got := s.replace(st.set); got != st.want {
			t.Errorf("%s: replace reported change %v, want %v", st.name, got, st.want)
		}
	}
}

func TestFileSourceOnConfigChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	changes := make(chan struct{}, 100)
	var src *FileSource
	r := startFileSource(t, dir, func(s *FileSource) {
		src = s
		s.onConfig = func() { changes <- struct{}{} }
	})
	r.waitFor()
	if _, err := src.Configs().GetConfigMap("default", "app"); !errdefs.IsNotFound(err) {
		t.Fatalf("empty directory: GetConfigMap error = %v, want NotFound", err)
	}

	// waitChange waits for OnConfigChange calls until the store's value of app's key k is
	// want ("" for no configmap). Calls in between (an in-place write is briefly an empty
	// file) are skipped.
	waitChange := func(what, want string) {
		t.Helper()
		deadline := time.After(changeDeadline)
		for {
			select {
			case <-changes:
			case <-deadline:
				t.Fatalf("%s: no OnConfigChange leading to k=%q within %v", what, want, changeDeadline)
			}
			cm, err := src.Configs().GetConfigMap("default", "app")
			if (want == "" && errdefs.IsNotFound(err)) || (want != "" && err == nil && cm.Data["k"] == want) {
				return
			}
		}
	}

	writeFile(t, dir, "app-config.yaml", configMapYAML("app", "k", "one"))
	waitChange("added", "one")

	writeFile(t, dir, "app-config.yaml", configMapYAML("app", "k", "two"))
	waitChange("edited", "two")

	// A touch, a chmod and the same content saved again (atomically, so no half-written
	// state shows) change nothing. A pod written afterwards and seen by update proves they
	// were processed.
	path := filepath.Join(dir, "app-config.yaml")
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, ".app-config.yaml.tmp", configMapYAML("app", "k", "two"))
	if err := os.Rename(filepath.Join(dir, ".app-config.yaml.tmp"), path); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "web.yaml", podYAML("web"))
	r.waitFor("default/web-node-1")
	select {
	case <-changes:
		t.Fatal("OnConfigChange called for a touch")
	default:
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitChange("deleted", "")
}
