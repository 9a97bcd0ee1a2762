package volume

import (
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
)

// errNeedsControlPlane is a serviceAccountToken source without an API server to issue it.
var errNeedsControlPlane = errors.New("serviceAccountToken needs a control plane (--kubeconfig)")

// projectsSecret reports whether a projected volume holds secret material, and so lives on a
// tmpfs.
func projectsSecret(src *v1.ProjectedVolumeSource) bool {
	for _, s := range src.Sources {
		if s.Secret != nil || s.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

func (m *Manager) projectedVolumePayload(pod *v1.Pod, src *v1.ProjectedVolumeSource) (map[string]file, error) {
	b := payloadBuilder{}
	mode := modeOr(src.DefaultMode, defaultFileMode)
	for i, s := range src.Sources {
		var err error
		switch {
		case s.ConfigMap != nil:
			var data map[string][]byte
			if data, err = m.configMapData(pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Optional); err == nil && data != nil {
				err = addKeys(b, "configmap", s.ConfigMap.Name, data, s.ConfigMap.Items, mode, s.ConfigMap.Optional)
			}
		case s.Secret != nil:
			var data map[string][]byte
			if data, err = m.secretData(pod.Namespace, s.Secret.Name, s.Secret.Optional); err == nil && data != nil {
				err = addKeys(b, "secret", s.Secret.Name, data, s.Secret.Items, mode, s.Secret.Optional)
			}
		case s.DownwardAPI != nil:
			err = addDownwardAPI(b, pod, s.DownwardAPI.Items, mode, m.alloc)
		case s.ServiceAccountToken != nil:
			err = m.addServiceAccountToken(b, pod, s.ServiceAccountToken, mode)
		case s.ClusterTrustBundle != nil:
			err = errors.New("clusterTrustBundle sources are not supported")
		default:
			err = errors.New("source sets no supported field (configMap, secret, downwardAPI, serviceAccountToken)")
		}
		if err != nil {
			return nil, fmt.Errorf("projected sources[%d]: %w", i, err)
		}
	}
	return b, b.check()
}

// addServiceAccountToken adds the token of a serviceAccountToken source at its path. As in the
// kubelet, the file takes the volume's defaultMode, the source having no mode of its own: 0644
// unless the volume sets one (the kube-api-access-* volume of the ServiceAccount admission sets
// 420, which is 0644 too).
func (m *Manager) addServiceAccountToken(b payloadBuilder, pod *v1.Pod, p *v1.ServiceAccountTokenProjection, mode int32) error {
	if m.tokens == nil {
		return errNeedsControlPlane
	}
	token, err := m.tokens.ServiceAccountToken(pod, p)
	if err != nil {
		return fmt.Errorf("serviceAccountToken %q: %w", p.Path, err)
	}
	if err := b.add(p.Path, []byte(token), mode); err != nil {
		return fmt.Errorf("serviceAccountToken: %w", err)
	}
	return nil
}
