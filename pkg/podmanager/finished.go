package podmanager

import v1 "k8s.io/api/core/v1"

// finalPhase reports whether phase is one a pod never leaves: Succeeded or Failed.
func finalPhase(phase v1.PodPhase) bool {
	return phase == v1.PodSucceeded || phase == v1.PodFailed
}

// keepFinalStatus never lets a pod's reported status leave a final phase. A pod whose source
// says it finished (the API server, from an earlier report or another writer such as an
// eviction) keeps that status when what the runtime holds now would say otherwise: after
// its containers were removed by hand, say. The API server refuses such transitions, and
// clients (Jobs) count on a finished pod staying finished, as with the kubelet.
func keepFinalStatus(pod *v1.Pod, computed v1.PodStatus) v1.PodStatus {
	if !finalPhase(pod.Status.Phase) || computed.Phase == pod.Status.Phase {
		return computed
	}
	return *pod.Status.DeepCopy()
}
