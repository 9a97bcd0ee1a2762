package controlplane

import (
	"fmt"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// configGetter is one source of ConfigMaps and Secrets: ConfigStore or KubeConfigs.
type configGetter interface {
	GetConfigMap(namespace, name string) (*v1.ConfigMap, error)
	GetSecret(namespace, name string) (*v1.Secret, error)
}

// MergedConfigs serves ConfigMaps and Secrets from the manifest directory first and from the
// API server after, so static pods see the objects written beside them and API pods see the
// API's (it has the methods of volume.ConfigSource and podmanager.ConfigSource). An object in
// both is the file's.
//
// An object is absent (an error of class errdefs.ErrNotFound, worded as the kubelet's:
// `configmap "x" not found`) when the file source has none and the API server either has none
// or refuses it as Forbidden: the Node authorizer refuses a node every object its API pods do
// not reference, which is what the API server looks like to a static pod, so an optional
// reference of a static pod is then skipped rather than blocking the pod. Other API errors
// (unreachable, timeouts) are returned as they are, so nothing is taken for absent during an
// outage.
type MergedConfigs struct {
	file, kube configGetter
}

// NewMergedConfigs serves from file, then kube.
func NewMergedConfigs(file *ConfigStore, kube *KubeConfigs) *MergedConfigs {
	return &MergedConfigs{file: file, kube: kube}
}

// GetConfigMap returns the file source's ConfigMap namespace/name, else the API server's.
func (m *MergedConfigs) GetConfigMap(namespace, name string) (*v1.ConfigMap, error) {
	return getMerged(refConfigMap, name, func(g configGetter) (*v1.ConfigMap, error) {
		return g.GetConfigMap(namespace, name)
	}, m.file, m.kube)
}

// GetSecret returns the file source's Secret namespace/name, else the API server's.
func (m *MergedConfigs) GetSecret(namespace, name string) (*v1.Secret, error) {
	return getMerged(refSecret, name, func(g configGetter) (*v1.Secret, error) {
		return g.GetSecret(namespace, name)
	}, m.file, m.kube)
}

func getMerged[T any](kind, name string, get func(configGetter) (*T, error), file, kube configGetter) (*T, error) {
	obj, err := get(file)
	if err == nil || !errdefs.IsNotFound(err) {
		return obj, err
	}
	obj, err = get(kube)
	if err == nil || errdefs.IsNotFound(err) {
		return obj, err
	}
	if apierrors.IsForbidden(err) {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("%s %q not found", kind, name))
	}
	return nil, err
}
