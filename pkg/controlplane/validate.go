package controlplane

import (
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validatePod checks what the agent relies on, on a pod that applyDefaults has already filled
// in (so an omitted restartPolicy is not an error, but a misspelt one is). It is a subset of
// the API server's validation, chosen so that a pod that passes can be run; every error names
// its field path. manifestName is metadata.name as written, before the node suffix: errors
// about the name quote what the user wrote.
func validatePod(pod *v1.Pod, manifestName string) field.ErrorList {
	meta := field.NewPath("metadata")
	errs := validatePodName(manifestName, pod.Name, meta.Child("name"))
	for _, msg := range validation.IsDNS1123Label(pod.Namespace) {
		errs = append(errs, field.Invalid(meta.Child("namespace"), pod.Namespace, msg))
	}
	errs = append(errs, metav1validation.ValidateLabels(pod.Labels, meta.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(pod.Annotations, meta.Child("annotations"))...)
	return append(errs, validatePodSpec(&pod.Spec, field.NewPath("spec"))...)
}

func validatePodName(manifestName, finalName string, fld *field.Path) field.ErrorList {
	if manifestName == "" {
		return field.ErrorList{field.Required(fld, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(manifestName) {
		errs = append(errs, field.Invalid(fld, manifestName, msg))
	}
	if len(errs) > 0 {
		return errs
	}
	// The name as written is fine; the node suffix can still make it too long.
	for _, msg := range validation.IsDNS1123Subdomain(finalName) {
		errs = append(errs, field.Invalid(fld, manifestName,
			fmt.Sprintf("with the node name appended (%q): %s", finalName, msg)))
	}
	return errs
}

func validatePodSpec(spec *v1.PodSpec, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	volumes, volErrs := validateVolumes(spec.Volumes, fld.Child("volumes"))
	errs = append(errs, volErrs...)

	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(fld.Child("containers"), "must have at least one container"))
	}
	// Container names are unique across init and app containers: they name the containers
	// in the runtime, in logs and in status.
	names := sets.New[string]()
	for i := range spec.InitContainers {
		errs = append(errs, validateContainer(&spec.InitContainers[i], true, spec.HostNetwork,
			volumes, names, fld.Child("initContainers").Index(i))...)
	}
	for i := range spec.Containers {
		errs = append(errs, validateContainer(&spec.Containers[i], false, spec.HostNetwork,
			volumes, names, fld.Child("containers").Index(i))...)
	}
	if len(spec.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(fld.Child("ephemeralContainers"), "static pods cannot have ephemeral containers"))
	}

	errs = append(errs, supported(fld.Child("restartPolicy"), spec.RestartPolicy,
		v1.RestartPolicyAlways, v1.RestartPolicyOnFailure, v1.RestartPolicyNever)...)
	errs = append(errs, supported(fld.Child("dnsPolicy"), spec.DNSPolicy,
		v1.DNSClusterFirstWithHostNet, v1.DNSClusterFirst, v1.DNSDefault, v1.DNSNone)...)
	if spec.DNSPolicy == v1.DNSNone && spec.DNSConfig == nil {
		errs = append(errs, field.Required(fld.Child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(*g, fld.Child("terminationGracePeriodSeconds"))...)
	}
	if d := spec.ActiveDeadlineSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(fld.Child("activeDeadlineSeconds"), *d, "must be greater than 0"))
	}
	return errs
}

// validateVolumes checks the pod's volumes and returns the set of their names, for the
// containers' volumeMounts to refer to.
func validateVolumes(vols []v1.Volume, fld *field.Path) (sets.Set[string], field.ErrorList) {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range vols {
		vol := &vols[i]
		vf := fld.Index(i)
		switch {
		case vol.Name == "":
			errs = append(errs, field.Required(vf.Child("name"), ""))
		case names.Has(vol.Name):
			errs = append(errs, field.Duplicate(vf.Child("name"), vol.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(vol.Name) {
				errs = append(errs, field.Invalid(vf.Child("name"), vol.Name, msg))
			}
			names.Insert(vol.Name)
		}
		// applyDefaults turned a source-less volume into an emptyDir, so zero cannot happen.
		if countSetPointers(&vol.VolumeSource) > 1 {
			errs = append(errs, field.Forbidden(vf, "may not specify more than 1 volume type"))
		}
		if hp := vol.HostPath; hp != nil && hp.Path == "" {
			errs = append(errs, field.Required(vf.Child("hostPath", "path"), ""))
		}
	}
	return names, errs
}

func validateContainer(c *v1.Container, isInit, hostNetwork bool, volumes, names sets.Set[string], fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case c.Name == "":
		errs = append(errs, field.Required(fld.Child("name"), ""))
	case names.Has(c.Name):
		errs = append(errs, field.Duplicate(fld.Child("name"), c.Name))
	default:
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(fld.Child("name"), c.Name, msg))
		}
		names.Insert(c.Name)
	}

	switch {
	case strings.TrimSpace(c.Image) == "":
		errs = append(errs, field.Required(fld.Child("image"), ""))
	case c.Image != strings.TrimSpace(c.Image):
		errs = append(errs, field.Invalid(fld.Child("image"), c.Image, "must not have leading or trailing whitespace"))
	}
	errs = append(errs, supported(fld.Child("imagePullPolicy"), c.ImagePullPolicy,
		v1.PullAlways, v1.PullIfNotPresent, v1.PullNever)...)
	errs = append(errs, supported(fld.Child("terminationMessagePolicy"), c.TerminationMessagePolicy,
		v1.TerminationMessageReadFile, v1.TerminationMessageFallbackToLogsOnError)...)

	// A container-level restartPolicy is how an init container becomes a sidecar
	// (restartable init container); the agent supports nothing else there.
	if rp := c.RestartPolicy; rp != nil {
		if isInit {
			errs = append(errs, supported(fld.Child("restartPolicy"), *rp, v1.ContainerRestartPolicyAlways)...)
		} else {
			errs = append(errs, field.Forbidden(fld.Child("restartPolicy"), "may only be set on init containers"))
		}
	}

	errs = append(errs, validatePorts(c.Ports, hostNetwork, fld.Child("ports"))...)
	// Probes and lifecycle hooks run in app containers and sidecars only (the API server
	// forbids them on other init containers, and the agent never runs them there).
	if !isInit || (c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways) {
		errs = append(errs, validateHandlerPorts(c, fld)...)
	}
	errs = append(errs, validateEnv(c.Env, fld.Child("env"))...)
	errs = append(errs, validateVolumeMounts(c.VolumeMounts, volumes, fld.Child("volumeMounts"))...)
	errs = append(errs, validateResources(&c.Resources, fld.Child("resources"))...)
	return errs
}

func validatePorts(ports []v1.ContainerPort, hostNetwork bool, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		pf := fld.Index(i)
		if p.Name != "" {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(pf.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(pf.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		if p.ContainerPort == 0 {
			errs = append(errs, field.Required(pf.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(pf.Child("containerPort"), p.ContainerPort, msg))
			}
		}
		if p.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(p.HostPort)) {
				errs = append(errs, field.Invalid(pf.Child("hostPort"), p.HostPort, msg))
			}
			if hostNetwork && p.HostPort != p.ContainerPort {
				errs = append(errs, field.Invalid(pf.Child("hostPort"), p.HostPort,
					"must match `containerPort` when `hostNetwork` is true"))
			}
		}
		errs = append(errs, supported(pf.Child("protocol"), p.Protocol, v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP)...)
	}
	return errs
}

// validateHandlerPorts checks the ports of the container's probes and lifecycle hooks, as the
// API server does: a number must be a port number, a name must be a valid port name. Beyond
// the API server, a name must also be one of the container's own ports: a static pod's ports
// never change, so a name that is not among them could never be resolved, and the probe
// would fail at every run (a liveness probe killing the container over and over).
func validateHandlerPorts(c *v1.Container, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, p := range []struct {
		name  string
		probe *v1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if p.probe == nil {
			continue
		}
		h, pf := &p.probe.ProbeHandler, fld.Child(p.name)
		if h.HTTPGet != nil {
			errs = append(errs, validatePortNumOrName(h.HTTPGet.Port, c.Ports, pf.Child("httpGet", "port"))...)
		}
		if h.TCPSocket != nil {
			errs = append(errs, validatePortNumOrName(h.TCPSocket.Port, c.Ports, pf.Child("tcpSocket", "port"))...)
		}
		if h.GRPC != nil {
			for _, msg := range validation.IsValidPortNum(int(h.GRPC.Port)) {
				errs = append(errs, field.Invalid(pf.Child("grpc", "port"), h.GRPC.Port, msg))
			}
		}
	}
	if c.Lifecycle == nil {
		return errs
	}
	for _, hook := range []struct {
		name    string
		handler *v1.LifecycleHandler
	}{{"postStart", c.Lifecycle.PostStart}, {"preStop", c.Lifecycle.PreStop}} {
		if hook.handler == nil {
			continue
		}
		hf := fld.Child("lifecycle", hook.name)
		if h := hook.handler.HTTPGet; h != nil {
			errs = append(errs, validatePortNumOrName(h.Port, c.Ports, hf.Child("httpGet", "port"))...)
		}
		if h := hook.handler.TCPSocket; h != nil {
			errs = append(errs, validatePortNumOrName(h.Port, c.Ports, hf.Child("tcpSocket", "port"))...)
		}
	}
	return errs
}

// validatePortNumOrName checks a probe's or hook's port: a number from 1 to 65535, or the
// name (an IANA_SVC_NAME) of one of ports.
func validatePortNumOrName(port intstr.IntOrString, ports []v1.ContainerPort, fld *field.Path) field.ErrorList {
	if port.Type == intstr.Int {
		var errs field.ErrorList
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			errs = append(errs, field.Invalid(fld, port.IntValue(), msg))
		}
		return errs
	}
	if msgs := validation.IsValidPortName(port.StrVal); len(msgs) > 0 {
		var errs field.ErrorList
		for _, msg := range msgs {
			errs = append(errs, field.Invalid(fld, port.StrVal, msg))
		}
		return errs
	}
	for _, p := range ports {
		if p.Name == port.StrVal {
			return nil
		}
	}
	return field.ErrorList{field.Invalid(fld, port.StrVal, "must be the name of one of the container's ports")}
}

func validateEnv(env []v1.EnvVar, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, ev := range env {
		ef := fld.Index(i)
		if ev.Name == "" {
			errs = append(errs, field.Required(ef.Child("name"), ""))
		} else {
			// The relaxed rule is the API server's default since Kubernetes 1.34.
			for _, msg := range validation.IsRelaxedEnvVarName(ev.Name) {
				errs = append(errs, field.Invalid(ef.Child("name"), ev.Name, msg))
			}
		}
		if ev.ValueFrom == nil {
			continue
		}
		vf := ef.Child("valueFrom")
		switch n := countSetPointers(ev.ValueFrom); {
		case ev.Value != "":
			errs = append(errs, field.Invalid(vf, "", "may not be specified when `value` is not empty"))
		case n == 0:
			errs = append(errs, field.Invalid(vf, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`"))
		case n > 1:
			errs = append(errs, field.Invalid(vf, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

func validateVolumeMounts(mounts []v1.VolumeMount, volumes sets.Set[string], fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		mf := fld.Index(i)
		switch {
		case m.Name == "":
			errs = append(errs, field.Required(mf.Child("name"), ""))
		case !volumes.Has(m.Name):
			errs = append(errs, field.NotFound(mf.Child("name"), m.Name))
		}
		switch {
		case m.MountPath == "":
			errs = append(errs, field.Required(mf.Child("mountPath"), ""))
		case paths.Has(m.MountPath):
			errs = append(errs, field.Invalid(mf.Child("mountPath"), m.MountPath, "must be unique"))
		default:
			paths.Insert(m.MountPath)
		}
		if m.SubPath != "" {
			if path.IsAbs(m.SubPath) {
				errs = append(errs, field.Invalid(mf.Child("subPath"), m.SubPath, "must be a relative path"))
			}
			if hasDotDot(m.SubPath) {
				errs = append(errs, field.Invalid(mf.Child("subPath"), m.SubPath, "must not contain '..'"))
			}
		}
	}
	return errs
}

// validateResources checks what decoding could not: quantities are parsed already, but a
// negative one, or a request above its limit, is still wrong.
func validateResources(r *v1.ResourceRequirements, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, list := range []struct {
		name string
		rl   v1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		for _, name := range slices.Sorted(maps.Keys(list.rl)) {
			if q := list.rl[name]; q.Sign() < 0 {
				errs = append(errs, field.Invalid(fld.Child(list.name).Key(string(name)), q.String(),
					"must be greater than or equal to 0"))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Requests)) {
		req := r.Requests[name]
		if limit, ok := r.Limits[name]; ok && req.Cmp(limit) > 0 {
			errs = append(errs, field.Invalid(fld.Child("requests").Key(string(name)), req.String(),
				fmt.Sprintf("must be less than or equal to %s limit of %s", name, limit.String())))
		}
	}
	return errs
}

// supported reports value unless it is one of allowed.
func supported[T ~string](fld *field.Path, value T, allowed ...T) field.ErrorList {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return field.ErrorList{field.NotSupported(fld, value, allowed)}
}

// countSetPointers counts the non-nil pointer fields of a struct such as v1.VolumeSource or
// v1.EnvVarSource, whose contract is "exactly one of these".
func countSetPointers(structPtr any) int {
	v := reflect.ValueOf(structPtr).Elem()
	n := 0
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

func hasDotDot(p string) bool {
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." {
			return true
		}
	}
	return false
}
