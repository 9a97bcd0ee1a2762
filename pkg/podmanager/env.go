package podmanager

import (
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/volume"
)

// ConfigSource serves the ConfigMaps and Secrets pods reference (volume.ConfigSource has the
// same two methods). Absent objects are errors for which errdefs.IsNotFound holds.
type ConfigSource interface {
	GetConfigMap(namespace, name string) (*v1.ConfigMap, error)
	GetSecret(namespace, name string) (*v1.Secret, error)
}

// makeEnv resolves c's environment as the kubelet does: envFrom first (in order, a prefix
// each, keys that are not valid variable names skipped), then env in order, where a value may
// use $(VAR) of the variables before it, or come from a fieldRef, a resourceFieldRef, a
// ConfigMap key or a Secret key. A missing non-optional reference is an error that names it.
func makeEnv(pod *v1.Pod, c *v1.Container, podIPs []string, nodeIP string, configs ConfigSource, allocatable v1.ResourceList) ([]*runtimeapi.KeyValue, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for i, from := range c.EnvFrom {
		data, err := envFromData(pod.Namespace, from, configs)
		if err != nil {
			return nil, fmt.Errorf("container %q: envFrom[%d]: %w", c.Name, i, err)
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if name := from.Prefix + k; len(validation.IsEnvVarName(name)) == 0 {
				set(name, data[k])
			}
		}
	}
	for i, e := range c.Env {
		val := expand(e.Value, vars)
		if src := e.ValueFrom; src != nil {
			v, skip, err := envSourceValue(pod, c, src, podIPs, nodeIP, configs, allocatable)
			if err != nil {
				return nil, fmt.Errorf("container %q: env[%d] (%s): %w", c.Name, i, e.Name, err)
			}
			if skip {
				continue // an optional reference that is absent
			}
			val = v
		}
		set(e.Name, val)
	}
	out := make([]*runtimeapi.KeyValue, 0, len(order))
	for _, k := range order {
		out = append(out, &runtimeapi.KeyValue{Key: k, Value: []byte(vars[k])})
	}
	return out, nil
}

func envFromData(namespace string, from v1.EnvFromSource, configs ConfigSource) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		cm, err := configs.GetConfigMap(namespace, from.ConfigMapRef.Name)
		if err != nil {
			if errdefs.IsNotFound(err) && from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
				return nil, nil
			}
			return nil, err
		}
		return cm.Data, nil
	case from.SecretRef != nil:
		sec, err := configs.GetSecret(namespace, from.SecretRef.Name)
		if err != nil {
			if errdefs.IsNotFound(err) && from.SecretRef.Optional != nil && *from.SecretRef.Optional {
				return nil, nil
			}
			return nil, err
		}
		out := make(map[string]string, len(sec.Data))
		for k, v := range sec.Data {
			out[k] = string(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("neither configMapRef nor secretRef is set")
}

// envSourceValue answers one valueFrom; skip is true for an absent optional reference.
func envSourceValue(pod *v1.Pod, c *v1.Container, src *v1.EnvVarSource, podIPs []string, nodeIP string, configs ConfigSource, allocatable v1.ResourceList) (value string, skip bool, err error) {
	optional := func(o *bool) bool { return o != nil && *o }
	switch {
	case src.FieldRef != nil:
		v, err := podField(pod, src.FieldRef.FieldPath, podIPs, nodeIP)
		return v, false, err
	case src.ResourceFieldRef != nil:
		ref := *src.ResourceFieldRef
		if ref.ContainerName == "" {
			ref.ContainerName = c.Name
		}
		v, err := volume.ResourceFieldValue(pod, &ref, allocatable)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := configs.GetConfigMap(pod.Namespace, ref.Name)
		if err != nil {
			if errdefs.IsNotFound(err) && optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, err
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, false, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		sec, err := configs.GetSecret(pod.Namespace, ref.Name)
		if err != nil {
			if errdefs.IsNotFound(err) && optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, err
		}
		v, ok := sec.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), false, nil
	}
	return "", false, fmt.Errorf("valueFrom has no source set")
}

// podField answers a downward-API field path.
func podField(pod *v1.Pod, path string, podIPs []string, nodeIP string) (string, error) {
	first := func(ips []string) string {
		if len(ips) > 0 {
			return ips[0]
		}
		return ""
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return first(podIPs), nil
	case "status.podIPs":
		return strings.Join(podIPs, ","), nil
	case "status.hostIP", "status.hostIPs":
		return nodeIP, nil
	}
	return volume.FieldValue(pod, path)
}

// expand replaces $(VAR) with vars[VAR] when defined and leaves it as written otherwise;
// $$ is an escaped $. These are Kubernetes' rules for env, command and args.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			ref := s[i : i+3+end]
			if v, ok := vars[s[i+2:i+2+end]]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func expandAll(in []string, vars map[string]string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, vars)
	}
	return out
}
