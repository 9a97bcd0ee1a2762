package volume

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func downwardAPIVolumePayload(pod *v1.Pod, src *v1.DownwardAPIVolumeSource, allocatable v1.ResourceList) (map[string]file, error) {
	b := payloadBuilder{}
	if err := addDownwardAPI(b, pod, src.Items, modeOr(src.DefaultMode, defaultFileMode), allocatable); err != nil {
		return nil, err
	}
	return b, b.check()
}

func addDownwardAPI(b payloadBuilder, pod *v1.Pod, items []v1.DownwardAPIVolumeFile, defaultMode int32, allocatable v1.ResourceList) error {
	for i, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil && it.ResourceFieldRef != nil:
			err = fmt.Errorf("fieldRef and resourceFieldRef are both set")
		case it.FieldRef != nil:
			val, err = FieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			val, err = ResourceFieldValue(pod, it.ResourceFieldRef, allocatable)
		default:
			err = fmt.Errorf("one of fieldRef and resourceFieldRef is required")
		}
		if err == nil {
			err = b.add(it.Path, []byte(val), modeOr(it.Mode, defaultMode))
		}
		if err != nil {
			return fmt.Errorf("downwardAPI items[%d] (path %q): %w", i, it.Path, err)
		}
	}
	return nil
}

// FieldValue answers the metadata field paths of the downward API (a volume may use all of
// them; env uses it for metadata.* too).
func FieldValue(pod *v1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	for _, f := range []struct {
		prefix string
		m      map[string]string
	}{{"metadata.labels", pod.Labels}, {"metadata.annotations", pod.Annotations}} {
		if rest, ok := strings.CutPrefix(path, f.prefix+"['"); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok && key != "" {
				return f.m[key], nil
			}
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported in a volume (supported: metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, metadata.labels['<key>'], metadata.annotations['<key>'])", path)
}

// formatMap renders labels or annotations as the kubelet does: key="value" lines, sorted by
// key, no trailing newline.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte('\n')
		}
		fmt.Fprintf(&sb, "%s=%q", k, m[k])
	}
	return sb.String()
}

// ResourceFieldValue answers a resourceFieldRef of the named container as the kubelet does:
// the limit or request divided by the divisor (default 1), rounded up; a request defaults to
// the limit, and a limit the container does not set is the node's allocatable amount (nil
// when unknown). Env refs fill ContainerName with their own container before calling it.
func ResourceFieldValue(pod *v1.Pod, ref *v1.ResourceFieldSelector, allocatable v1.ResourceList) (string, error) {
	if ref.ContainerName == "" {
		return "", fmt.Errorf("resourceFieldRef %q: containerName is required in a volume", ref.Resource)
	}
	c := findContainer(pod, ref.ContainerName)
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef %q: pod has no container %q", ref.Resource, ref.ContainerName)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef %q is not supported (want limits.<resource> or requests.<resource>)", ref.Resource)
	}
	rn := v1.ResourceName(name)
	switch {
	case rn == v1.ResourceCPU, rn == v1.ResourceMemory, rn == v1.ResourceEphemeralStorage, strings.HasPrefix(name, v1.ResourceHugePagesPrefix):
	default:
		return "", fmt.Errorf("resourceFieldRef %q is not supported (resources: cpu, memory, ephemeral-storage, hugepages-<size>)", ref.Resource)
	}
	var q resource.Quantity
	if kind == "limits" {
		l, ok := c.Resources.Limits[rn]
		if !ok {
			l, ok = allocatable[rn]
		}
		if !ok {
			return "", fmt.Errorf("resourceFieldRef %q: container %q sets no %s limit, and the node's allocatable %s (the kubelet's default) is not known", ref.Resource, c.Name, name, name)
		}
		q = l
	} else {
		// The API defaults an unset request to the limit; with neither it is zero.
		if r, ok := c.Resources.Requests[rn]; ok {
			q = r
		} else if l, ok := c.Resources.Limits[rn]; ok {
			q = l
		}
	}
	if rn == v1.ResourceCPU {
		if divisor.MilliValue() == 0 {
			return "", fmt.Errorf("resourceFieldRef %q: divisor %s is too small", ref.Resource, divisor.String())
		}
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	if divisor.Value() == 0 {
		return "", fmt.Errorf("resourceFieldRef %q: divisor %s is too small", ref.Resource, divisor.String())
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

func findContainer(pod *v1.Pod, name string) *v1.Container {
	for _, list := range [][]v1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}
