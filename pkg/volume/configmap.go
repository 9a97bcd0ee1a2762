package volume

import (
	"fmt"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
)

// defaultFileMode is the API default of defaultMode for configMap, secret, downwardAPI and
// projected volumes.
const defaultFileMode int32 = 0o644

// missingObjectError is a non-optional ConfigMap or Secret that does not exist. Its message is
// the kubelet's and it wraps the source's NotFound error, so errdefs.IsNotFound holds.
type missingObjectError struct {
	kind, name string
	cause      error
}

func (e *missingObjectError) Error() string { return fmt.Sprintf("%s %q not found", e.kind, e.name) }
func (e *missingObjectError) Unwrap() error { return e.cause }

// getObject fetches one object, turning "absent" into (nil, nil) when optional and into a
// missingObjectError otherwise.
func getObject[T any](kind, name string, optional *bool, get func() (*T, error)) (*T, error) {
	obj, err := get()
	if err == nil && obj == nil {
		err = fmt.Errorf("%s %q: %w", kind, name, errdefs.ErrNotFound)
	}
	if err != nil {
		if !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("get %s %q: %w", kind, name, err)
		}
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, &missingObjectError{kind: kind, name: name, cause: err}
	}
	return obj, nil
}

func modeOr(mode *int32, def int32) int32 {
	if mode != nil {
		return *mode
	}
	return def
}

// addKeys adds data (one object's keys) to b: every key under its own name when items is
// empty, else the items, each of which must name an existing key unless optional.
func addKeys(b payloadBuilder, kind, name string, data map[string][]byte, items []v1.KeyToPath, defaultMode int32, optional *bool) error {
	if len(items) == 0 {
		for k, v := range data {
			if err := b.add(k, v, defaultMode); err != nil {
				return fmt.Errorf("%s %q key %q: %w", kind, name, k, err)
			}
		}
		return nil
	}
	for i, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return fmt.Errorf("items[%d]: %s %q has no key %q", i, kind, name, it.Key)
		}
		if err := b.add(it.Path, v, modeOr(it.Mode, defaultMode)); err != nil {
			return fmt.Errorf("items[%d] (key %q): %w", i, it.Key, err)
		}
	}
	return nil
}

func (m *Manager) configMapData(namespace, name string, optional *bool) (map[string][]byte, error) {
	cm, err := getObject("configmap", name, optional, func() (*v1.ConfigMap, error) {
		return m.source.GetConfigMap(namespace, name)
	})
	if err != nil || cm == nil {
		return nil, err
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		if _, dup := data[k]; dup {
			return nil, fmt.Errorf("configmap %q: key %q is in both data and binaryData", name, k)
		}
		data[k] = v
	}
	return data, nil
}

func (m *Manager) configMapVolumePayload(pod *v1.Pod, src *v1.ConfigMapVolumeSource) (map[string]file, error) {
	b := payloadBuilder{}
	data, err := m.configMapData(pod.Namespace, src.Name, src.Optional)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return b, nil // optional and absent: an empty volume
	}
	if err := addKeys(b, "configmap", src.Name, data, src.Items, modeOr(src.DefaultMode, defaultFileMode), src.Optional); err != nil {
		return nil, err
	}
	return b, b.check()
}
