package podmanager

import (
	v1 "k8s.io/api/core/v1"
)

// admit decides once whether the pod may run on this node, as the kubelet's admission does
// when a pod arrives, and returns why not ("" when it may). A pod that already has a sandbox
// or containers here (adopted after an agent restart) or whose phase is final is not judged
// again. A rejected pod is Failed with the reason and "Pod was rejected: <why>", nothing of
// it is started, and a Warning event says why.
func (w *worker) admit(pod *v1.Pod, st *podState) string {
	if w.admitted || w.rejection != "" {
		return w.rejection
	}
	if finalPhase(pod.Status.Phase) || len(st.sandboxes) > 0 || len(st.containers) > 0 {
		w.admitted = true
		return ""
	}
	var names []string
	if sc := pod.Spec.SecurityContext; sc != nil {
		for _, s := range sc.Sysctls {
			names = append(names, s.Name)
		}
	}
	if why := w.m.sysctls.check(pod.Spec.HostNetwork, pod.Spec.HostIPC, names); why != "" {
		w.rejection, w.rejectionReason = why, reasonSysctlForbidden
		w.log.WithField("reason", w.rejectionReason).Warn("pod rejected: " + why)
		w.event(pod, v1.EventTypeWarning, w.rejectionReason, why)
		return why
	}
	w.admitted = true
	return ""
}

// rejectedStatus is the status of a pod admission refused, as the kubelet writes it.
func (w *worker) rejectedStatus(s v1.PodStatus) v1.PodStatus {
	s.Phase, s.Reason, s.Message = v1.PodFailed, w.rejectionReason, "Pod was rejected: "+w.rejection
	return s
}
