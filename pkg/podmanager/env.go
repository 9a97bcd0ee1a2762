package podmanager

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// makeEnv resolves c's env in order: literal values with $(VAR) references to earlier
// variables, and fieldRef to the pod's own fields. configMap/secret/resource references and
// envFrom come with the volume and configuration work; until then they are a clear error.
func makeEnv(pod *v1.Pod, c *v1.Container, podIPs []string, nodeIP string) ([]*runtimeapi.KeyValue, error) {
	if len(c.EnvFrom) > 0 {
		return nil, fmt.Errorf("container %q: envFrom is not supported yet", c.Name)
	}
	vars := map[string]string{}
	var out []*runtimeapi.KeyValue
	for i, e := range c.Env {
		val := expand(e.Value, vars)
		if src := e.ValueFrom; src != nil {
			if src.FieldRef == nil {
				return nil, fmt.Errorf("container %q: env[%d] (%s): only valueFrom.fieldRef is supported yet", c.Name, i, e.Name)
			}
			v, err := podField(pod, src.FieldRef.FieldPath, podIPs, nodeIP)
			if err != nil {
				return nil, fmt.Errorf("container %q: env[%d] (%s): %w", c.Name, i, e.Name, err)
			}
			val = v
		}
		vars[e.Name] = val
		out = append(out, &runtimeapi.KeyValue{Key: e.Name, Value: []byte(val)})
	}
	return out, nil
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
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if key, ok := subscript(path, prefix); ok {
			return m[key], nil
		}
	}
	return "", fmt.Errorf("fieldRef %q is not a supported field path", path)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
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
