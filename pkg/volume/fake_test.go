package volume

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeSource serves ConfigMaps and Secrets from maps keyed "namespace/name".
type fakeSource struct {
	mu         sync.Mutex
	configMaps map[string]*v1.ConfigMap
	secrets    map[string]*v1.Secret
}

func newFakeSource() *fakeSource {
	return &fakeSource{configMaps: map[string]*v1.ConfigMap{}, secrets: map[string]*v1.Secret{}}
}

func (s *fakeSource) setConfigMap(ns, name string, data map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configMaps[ns+"/"+name] = &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func (s *fakeSource) setSecret(ns, name string, data map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := map[string][]byte{}
	for k, v := range data {
		b[k] = []byte(v)
	}
	s.secrets[ns+"/"+name] = &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: b}
}

func (s *fakeSource) GetConfigMap(ns, name string) (*v1.ConfigMap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cm, ok := s.configMaps[ns+"/"+name]; ok {
		return cm.DeepCopy(), nil
	}
	return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, errdefs.ErrNotFound)
}

func (s *fakeSource) GetSecret(ns, name string) (*v1.Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec, ok := s.secrets[ns+"/"+name]; ok {
		return sec.DeepCopy(), nil
	}
	return nil, fmt.Errorf("secret %s/%s: %w", ns, name, errdefs.ErrNotFound)
}

// fakeMounter records tmpfs and bind mounts by path; a "mount" is only a note, the directory
// stays on the test's disk. A bind of /proc/self/fd/N records the path the descriptor refers
// to at the time of the call, which is what a real bind would show.
type fakeMounter struct {
	mu         sync.Mutex
	mounts     map[string]int64  // path -> size
	binds      map[string]string // target -> what the source referred to
	mountErr   error
	unmountErr error
	calls      int
}

func newFakeMounter() *fakeMounter {
	return &fakeMounter{mounts: map[string]int64{}, binds: map[string]string{}}
}

func (f *fakeMounter) BindMount(source, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := os.Lstat(target); err != nil {
		return err
	}
	real, err := os.Readlink(source)
	if err != nil {
		return err
	}
	f.binds[target] = real
	return nil
}

// bound is what target is bind-mounted from, "" when nothing is.
func (f *fakeMounter) bound(target string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.binds[target]
}

func (f *fakeMounter) MountTmpfs(target string, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.mountErr != nil {
		return f.mountErr
	}
	if _, err := os.Stat(target); err != nil {
		return err
	}
	f.mounts[target] = size
	return nil
}

func (f *fakeMounter) Unmount(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unmountErr != nil {
		return f.unmountErr
	}
	if _, ok := f.binds[target]; ok {
		delete(f.binds, target)
		return nil
	}
	delete(f.mounts, target)
	return nil
}

func (f *fakeMounter) IsMountPoint(p string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.mounts[p]
	_, bound := f.binds[p]
	return ok || bound, nil
}

func (f *fakeMounter) size(p string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.mounts[p]
	return s, ok
}

type testEnv struct {
	root    string
	m       *Manager
	source  *fakeSource
	mounter *fakeMounter
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	env := &testEnv{root: t.TempDir(), source: newFakeSource(), mounter: newFakeMounter()}
	env.m = env.newManager(t)
	return env
}

// newManager is a fresh Manager on the same root, source and mounts: an agent restart.
func (env *testEnv) newManager(t *testing.T) *Manager {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := New(Config{RootDir: env.root, Source: env.source, Mounter: env.mounter, Log: logrus.NewEntry(log)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (env *testEnv) volDir(pod *v1.Pod, plugin, name string) string {
	return filepath.Join(env.root, "pods", string(pod.UID), "volumes", plugin, name)
}

func testPod(vols ...v1.Volume) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
		Spec: v1.PodSpec{
			Containers: []v1.Container{{Name: "app"}},
			Volumes:    vols,
		},
	}
}

func ptr[T any](v T) *T { return &v }

// readVolume returns the user-visible files of an atomic-writer volume (symlinks followed),
// keyed by path, skipping the writer's own ".." entries.
func readVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(dir, rel)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.IsDir() {
			es, err := os.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				walk(filepath.Join(rel, e.Name()))
			}
			return
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[rel] = string(b)
	}
	for _, e := range entries {
		if len(e.Name()) >= 2 && e.Name()[:2] == ".." {
			continue
		}
		walk(e.Name())
	}
	return out
}

func fileMode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
