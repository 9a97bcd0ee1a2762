package volume

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
)

func (m *Manager) secretData(namespace, name string, optional *bool) (map[string][]byte, error) {
	sec, err := getObject("secret", name, optional, func() (*v1.Secret, error) {
		return m.source.GetSecret(namespace, name)
	})
	if err != nil || sec == nil {
		return nil, err
	}
	data := make(map[string][]byte, len(sec.Data)+len(sec.StringData))
	for k, v := range sec.Data {
		data[k] = v
	}
	// stringData is write-only in the API; a manifest directory may still carry it.
	for k, v := range sec.StringData {
		data[k] = []byte(v)
	}
	return data, nil
}

func (m *Manager) secretVolumePayload(pod *v1.Pod, src *v1.SecretVolumeSource) (map[string]file, error) {
	if src.SecretName == "" {
		return nil, fmt.Errorf("secret volume: secretName is required")
	}
	b := payloadBuilder{}
	data, err := m.secretData(pod.Namespace, src.SecretName, src.Optional)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return b, nil // optional and absent: an empty volume
	}
	if err := addKeys(b, "secret", src.SecretName, data, src.Items, modeOr(src.DefaultMode, defaultFileMode), src.Optional); err != nil {
		return nil, err
	}
	return b, b.check()
}
