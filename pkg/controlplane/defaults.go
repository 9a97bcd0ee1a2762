package controlplane

import (
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Defaults the API server applies to every pod, repeated here so a pod from a file looks to
// the rest of the agent exactly like the same pod read from a Kubernetes API server.
const (
	defaultTerminationGracePeriodSeconds = int64(30)
	defaultVolumeMode                    = int32(0o644)
	defaultProbeTimeoutSeconds           = int32(1)
	defaultProbePeriodSeconds            = int32(10)
	defaultProbeSuccessThreshold         = int32(1)
	defaultProbeFailureThreshold         = int32(3)
)

// staticPodName is the kubelet's name for a static pod: the manifest's name with the node's
// name appended, so that mirror pods of several nodes do not collide in the API server.
func staticPodName(name, nodeName string) string {
	return name + "-" + strings.ToLower(nodeName)
}

// applyDefaults fills in what the API server's defaulting and the kubelet's static-pod
// handling would: namespace, the node-suffixed name, spec.nodeName and the spec defaults.
// It never overrides a value the manifest set. The UID and annotations are set separately.
func applyDefaults(pod *v1.Pod, nodeName string) {
	if pod.Namespace == "" {
		pod.Namespace = metav1.NamespaceDefault
	}
	pod.Name = staticPodName(pod.Name, nodeName)
	// A manifest's uid and status mean nothing here: the UID is derived from the content
	// (uid.go) and the status is the agent's to compute.
	pod.UID = ""
	pod.Status = v1.PodStatus{}

	spec := &pod.Spec
	spec.NodeName = nodeName
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = v1.RestartPolicyAlways
	}
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = v1.DNSClusterFirst
	}
	if spec.TerminationGracePeriodSeconds == nil {
		spec.TerminationGracePeriodSeconds = ptr.To(defaultTerminationGracePeriodSeconds)
	}
	if spec.SchedulerName == "" {
		spec.SchedulerName = v1.DefaultSchedulerName
	}
	if spec.SecurityContext == nil {
		spec.SecurityContext = &v1.PodSecurityContext{}
	}
	for i := range spec.InitContainers {
		defaultContainer(&spec.InitContainers[i], spec.HostNetwork)
	}
	for i := range spec.Containers {
		defaultContainer(&spec.Containers[i], spec.HostNetwork)
	}
	for i := range spec.Volumes {
		defaultVolume(&spec.Volumes[i])
	}
}

func defaultContainer(c *v1.Container, hostNetwork bool) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = defaultPullPolicy(c.Image)
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = v1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = v1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		p := &c.Ports[i]
		if p.Protocol == "" {
			p.Protocol = v1.ProtocolTCP
		}
		// On the host network a container port is a host port; the API server says so.
		if hostNetwork && p.HostPort == 0 {
			p.HostPort = p.ContainerPort
		}
	}
	// Requests default to limits, which decides the pod's QoS class.
	if c.Resources.Limits != nil {
		if c.Resources.Requests == nil {
			c.Resources.Requests = v1.ResourceList{}
		}
		for name, limit := range c.Resources.Limits {
			if _, ok := c.Resources.Requests[name]; !ok {
				c.Resources.Requests[name] = limit.DeepCopy()
			}
		}
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil && vf.FieldRef != nil && vf.FieldRef.APIVersion == "" {
			vf.FieldRef.APIVersion = "v1"
		}
	}
	for _, p := range []*v1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(p)
	}
}

func defaultProbe(p *v1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = defaultProbeTimeoutSeconds
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = defaultProbePeriodSeconds
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = defaultProbeSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = defaultProbeFailureThreshold
	}
	if h := p.HTTPGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = v1.URISchemeHTTP
		}
	}
}

func defaultVolume(vol *v1.Volume) {
	// A volume that names no source is an emptyDir, as the API server decides.
	if ptr.AllPtrFieldsNil(&vol.VolumeSource) {
		vol.EmptyDir = &v1.EmptyDirVolumeSource{}
	}
	src := &vol.VolumeSource
	if src.HostPath != nil && src.HostPath.Type == nil {
		src.HostPath.Type = ptr.To(v1.HostPathUnset)
	}
	if src.Secret != nil && src.Secret.DefaultMode == nil {
		src.Secret.DefaultMode = ptr.To(defaultVolumeMode)
	}
	if src.ConfigMap != nil && src.ConfigMap.DefaultMode == nil {
		src.ConfigMap.DefaultMode = ptr.To(defaultVolumeMode)
	}
	if src.Projected != nil && src.Projected.DefaultMode == nil {
		src.Projected.DefaultMode = ptr.To(defaultVolumeMode)
	}
	if src.DownwardAPI != nil {
		if src.DownwardAPI.DefaultMode == nil {
			src.DownwardAPI.DefaultMode = ptr.To(defaultVolumeMode)
		}
		for i := range src.DownwardAPI.Items {
			if fr := src.DownwardAPI.Items[i].FieldRef; fr != nil && fr.APIVersion == "" {
				fr.APIVersion = "v1"
			}
		}
	}
}

// defaultPullPolicy is the API server's default for a container's imagePullPolicy: Always for
// an image whose tag is "latest" or that has neither tag nor digest (it means "latest"),
// IfNotPresent otherwise. As in Kubernetes, "x:latest@sha256:..." still counts as latest.
func defaultPullPolicy(image string) v1.PullPolicy {
	tag, digest := imageTagAndDigest(image)
	if tag == "latest" || (tag == "" && digest == "") {
		return v1.PullAlways
	}
	return v1.PullIfNotPresent
}

// imageTagAndDigest splits an image reference such as "host:5000/ns/app:1.2@sha256:abc" into
// its tag ("1.2") and digest ("sha256:abc"). A colon before the last slash belongs to the
// registry host's port, not to a tag.
func imageTagAndDigest(image string) (tag, digest string) {
	name, digest, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		tag = name[i+1:]
	}
	return tag, digest
}

// setSourceAnnotations records where the pod came from. The pod's UID must already be set.
func setSourceAnnotations(pod *v1.Pod, source, location string, seen time.Time) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationConfigSource] = source
	pod.Annotations[AnnotationConfigHash] = string(pod.UID)
	pod.Annotations[AnnotationConfigSeen] = seen.UTC().Format(time.RFC3339Nano)
	pod.Annotations[AnnotationManifestFile] = location
}
