package cri

// Label and annotation names the agent puts on CRI sandboxes and containers.
//
// The io.kubernetes.* names are the kubelet's own, so `crictl pods` and
// `crictl ps` show our objects the way users expect, and so the agent can
// rebuild its view of every pod from the runtime alone after a restart.
const (
	// LabelPodName holds the pod's metadata.name (sandbox and container label).
	LabelPodName = "io.kubernetes.pod.name"
	// LabelPodNamespace holds the pod's metadata.namespace.
	LabelPodNamespace = "io.kubernetes.pod.namespace"
	// LabelPodUID holds the pod's metadata.uid, the key the agent groups by.
	LabelPodUID = "io.kubernetes.pod.uid"
	// LabelContainerName holds the container's name from the pod spec.
	LabelContainerName = "io.kubernetes.container.name"

	// AnnotationContainerHash holds a hash of the container's spec; a change
	// means the running container no longer matches the desired one.
	AnnotationContainerHash = "io.kubernetes.container.hash"
	// AnnotationRestartCount holds how many times the container was restarted.
	AnnotationRestartCount = "io.kubernetes.container.restartCount"
	// AnnotationTerminationMessagePath holds the container's
	// terminationMessagePath.
	AnnotationTerminationMessagePath = "io.kubernetes.container.terminationMessagePath"
	// AnnotationTerminationMessagePolicy holds the container's
	// terminationMessagePolicy.
	AnnotationTerminationMessagePolicy = "io.kubernetes.container.terminationMessagePolicy"
	// AnnotationContainerPorts holds the container's ports as JSON.
	AnnotationContainerPorts = "io.kubernetes.container.ports"
	// AnnotationPodTerminationGracePeriod holds the pod's
	// terminationGracePeriodSeconds.
	AnnotationPodTerminationGracePeriod = "io.kubernetes.pod.terminationGracePeriod"

	// LabelManagedBy marks every sandbox and container nodeagent created, with
	// the value LabelManagedByValue, so the agent never touches objects that
	// someone else (crictl, another kubelet) put on the same runtime.
	LabelManagedBy = "io.nodeagent.managed"
	// LabelManagedByValue is the value of LabelManagedBy.
	LabelManagedByValue = "true"
	// LabelNodeName holds the name of the node whose agent created the object.
	LabelNodeName = "io.nodeagent.node"
)
