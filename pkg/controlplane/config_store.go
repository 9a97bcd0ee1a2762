package controlplane

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
)

// ConfigStore holds the ConfigMaps and Secrets of the file source's last scan, for the
// volume and environment code to read. Reads may run concurrently with each other and with
// the source's updates. The zero value is an empty store.
//
// It has the methods of volume.ConfigSource (declared by its consumer, pkg/volume, which
// this package does not import); a store served from the API server will have the same.
type ConfigStore struct {
	mu  sync.RWMutex
	set configSet // guarded by mu; its objects are never modified, only replaced
}

// GetConfigMap returns a copy of the ConfigMap namespace/name. When there is none, the error
// is of class errdefs.ErrNotFound and reads as the kubelet's: `configmap "name" not found`.
func (s *ConfigStore) GetConfigMap(namespace, name string) (*v1.ConfigMap, error) {
	s.mu.RLock()
	cm := s.set.configMaps[namespace+"/"+name]
	s.mu.RUnlock()
	if cm == nil {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("configmap %q not found", name))
	}
	return cm.DeepCopy(), nil
}

// GetSecret returns a copy of the Secret namespace/name. When there is none, the error is of
// class errdefs.ErrNotFound and reads as the kubelet's: `secret "name" not found`.
func (s *ConfigStore) GetSecret(namespace, name string) (*v1.Secret, error) {
	s.mu.RLock()
	sec := s.set.secrets[namespace+"/"+name]
	s.mu.RUnlock()
	if sec == nil {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("secret %q not found", name))
	}
	return sec.DeepCopy(), nil
}

// replace makes next the store's content and reports whether that changed anything: an
// object added, removed, or with other content. The store keeps next's objects; the caller
// must not modify them afterwards.
func (s *ConfigStore) replace(next configSet) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sameObjects(s.set.configMaps, next.configMaps) && sameObjects(s.set.secrets, next.secrets) {
		return false
	}
	s.set = next
	return true
}

// sameObjects compares two sets of objects by content. A rescan reuses the objects of files
// that did not change, so most comparisons end at the pointer check.
func sameObjects[T any](a, b map[string]*T) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || (x != y && !reflect.DeepEqual(x, y)) {
			return false
		}
	}
	return true
}
