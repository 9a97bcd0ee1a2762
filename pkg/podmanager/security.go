package podmanager

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func namespaceOptions(pod *v1.Pod) *runtimeapi.NamespaceOption {
	ns := &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
	if pod.Spec.HostNetwork {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostIPC {
		ns.Ipc = runtimeapi.NamespaceMode_NODE
	}
	switch {
	case pod.Spec.HostPID:
		ns.Pid = runtimeapi.NamespaceMode_NODE
	case pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace:
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	return ns
}

func podSecurityContext(pod *v1.Pod) *runtimeapi.LinuxSandboxSecurityContext {
	sc := &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = supplementalGroups(psc)
	}
	// The sandbox must be privileged when any container is, as the kubelet does.
	for _, c := range append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			sc.Privileged = true
		}
	}
	return sc
}

func supplementalGroups(psc *v1.PodSecurityContext) []int64 {
	groups := append([]int64{}, psc.SupplementalGroups...)
	if psc.FSGroup != nil {
		groups = append(groups, *psc.FSGroup)
	}
	return groups
}

// containerSecurityContext merges the pod's and the container's security contexts, the
// container's fields winning.
func containerSecurityContext(pod *v1.Pod, c *v1.Container) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	runAsUser := effectiveRunAsUser(pod, c)
	var runAsGroup *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		runAsGroup = psc.RunAsGroup
		sc.SupplementalGroups = supplementalGroups(psc)
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsGroup != nil {
			runAsGroup = csc.RunAsGroup
		}
		if csc.Privileged != nil {
			sc.Privileged = *csc.Privileged
		}
		if csc.ReadOnlyRootFilesystem != nil {
			sc.ReadonlyRootfs = *csc.ReadOnlyRootFilesystem
		}
		if csc.AllowPrivilegeEscalation != nil {
			sc.NoNewPrivs = !*csc.AllowPrivilegeEscalation
		}
		if caps := csc.Capabilities; caps != nil {
			sc.Capabilities = &runtimeapi.Capability{}
			for _, a := range caps.Add {
				sc.Capabilities.AddCapabilities = append(sc.Capabilities.AddCapabilities, string(a))
			}
			for _, d := range caps.Drop {
				sc.Capabilities.DropCapabilities = append(sc.Capabilities.DropCapabilities, string(d))
			}
		}
	}
	if runAsUser != nil {
		sc.RunAsUser = &runtimeapi.Int64Value{Value: *runAsUser}
	}
	if runAsGroup != nil {
		sc.RunAsGroup = &runtimeapi.Int64Value{Value: *runAsGroup}
	}
	return sc
}

// runAsNonRoot is the pod's or the container's runAsNonRoot, the container's winning.
func runAsNonRoot(pod *v1.Pod, c *v1.Container) bool {
	v := false
	if psc := pod.Spec.SecurityContext; psc != nil && psc.RunAsNonRoot != nil {
		v = *psc.RunAsNonRoot
	}
	if csc := c.SecurityContext; csc != nil && csc.RunAsNonRoot != nil {
		v = *csc.RunAsNonRoot
	}
	return v
}

// effectiveRunAsUser is the pod's or the container's runAsUser, the container's winning: the
// user the container runs as, and the one runAsNonRoot checks.
func effectiveRunAsUser(pod *v1.Pod, c *v1.Container) *int64 {
	var uid *int64
	if psc := pod.Spec.SecurityContext; psc != nil && psc.RunAsUser != nil {
		uid = psc.RunAsUser
	}
	if csc := c.SecurityContext; csc != nil && csc.RunAsUser != nil {
		uid = csc.RunAsUser
	}
	return uid
}

// verifyRunAsNonRoot refuses to create a container that runAsNonRoot forbids, as the kubelet
// does: the runtime does not check it. With runAsUser set, only 0 is refused; otherwise the
// image's user decides: a numeric user must not be 0, no user at all means root, and a user
// name cannot be checked without the image's passwd file, so it is refused too. The errors
// carry the kubelet's phrases, which users search for.
func verifyRunAsNonRoot(pod *v1.Pod, c *v1.Container, img *runtimeapi.Image) error {
	if !runAsNonRoot(pod, c) {
		return nil
	}
	podRef := pod.Namespace + "/" + pod.Name
	if uid := effectiveRunAsUser(pod, c); uid != nil {
		if *uid == 0 {
			return fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podRef, c.Name)
		}
		return nil
	}
	switch {
	case img != nil && img.Uid != nil && img.Uid.Value != 0:
		return nil
	case img != nil && img.Uid == nil && img.Username != "":
		return fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", img.Username, podRef, c.Name)
	default:
		return fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podRef, c.Name)
	}
}
