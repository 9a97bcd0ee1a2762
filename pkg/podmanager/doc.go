// Package podmanager turns the desired set of pods into sandboxes and containers on a CRI
// runtime, and computes each pod's status.
//
// One worker goroutine per pod UID; the latest desired pod wins. Sources call Update with
// their complete set; Update records it under the manager's lock and wakes workers without
// blocking. A relist of the runtime (the kubelet's PLEG, until runtime events replace it)
// wakes the workers whose containers changed.
//
//	Update / relist / timer --wake--> worker.syncOnce
//	    deleted?  terminate: StopContainer(grace) -> StopPodSandbox -> RemovePodSandbox -> log dir
//	    else      sync: observe -> reconcile -> observe -> status.Set
//	reconcile: finished? stop sandbox | no ready sandbox? clean dead ones, RunPodSandbox, resync
//	           init containers one at a time to exit 0 -> app containers (image, create, start)
//	           exited + restartPolicy says restart -> new attempt, unless backing off
//
// Each pass starts from what the runtime reports, so a pass repeated changes nothing, and an
// agent restarted with the same pods adopts what is running instead of duplicating it. The
// agent's context only stops the loops: cancelling it never kills a pod.
package podmanager
