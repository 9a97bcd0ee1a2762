// Package controlplane owns nodeagent's pod sources: where the desired pods of this node come
// from. Each source turns its input into complete, defaulted core/v1 Pods with a stable UID
// and hands the whole current set to the pod manager, which keys everything by that UID.
//
// Sources:
//
//   - file (file_source.go: the watch loop; scan.go: one pass over the directory;
//     manifest.go, split.go and decode_errors.go: splitting and strict decoding;
//     manifest_limits.go: the size, encoding and nesting a file may have; defaults.go;
//     validate.go; uid.go): a directory of Pod manifests, the kubelet's "static pods".
//     Standalone mode and the embedded default. The same directory may hold ConfigMaps and
//     Secrets (configs.go), which static pods can mount and read, unlike the kubelet's; the
//     source serves them from a ConfigStore (config_store.go), and pull_auth.go reads image
//     pull secrets.
//   - kube (kube_source.go): a real Kubernetes API server through client-go, with the node's
//     own credentials (Node authorizer, NodeRestriction). Calls go through package kubeclient,
//     a narrow client of the four API groups used (client-go's clientset costs megabytes of
//     resident memory for the groups it registers); tests wrap client-go's fake clientset. An informer on spec.nodeName feeds
//     the pods to run (terminal and mirror pods left out); PodTerminated finishes a deletion
//     (grace 0, UID precondition) once the manager has stopped the pod. Around it:
//     node.go, node_status.go, node_lease.go, machine.go: the Node (registration or
//     adoption, status from host readings, patched when it changes or every 5 min) and its
//     Lease, renewed every 10 s;
//     kube_status.go, mirror.go: the Reporter, the one goroutine that patches pod statuses
//     (only what changed, level-triggered against the API's copy, so outages and conflicts
//     heal on the next pass) and keeps a mirror pod per static pod;
//     kube_configs.go, tokens.go, configs_merged.go: ConfigMaps and Secrets the node's pods
//     reference, watched one by one, and service-account tokens through TokenRequest,
//     rotated before expiry; static pods keep reading the manifest directory's first;
//     kube_events.go: pod events through client-go's rate-limited broadcaster.
//
// The file source is level-triggered: every trigger leads to a full rescan of the directory,
// and the complete set is handed over whenever it differs from the last one handed over:
//
//	fsnotify event ──> debounce ──┐
//	resync tick ──────────────────┼─> scan(dir) ─> set changed? ─yes─> update(all pods)
//	dir poll (while not watched) ─┘        │
//	                                       └─ per file: same content as last time? reuse it;
//	                                          else ParseManifests (split, decode strictly,
//	                                          default, validate, UID) and log its bad
//	                                          documents, once per content
//
// A scan's ConfigMaps and Secrets replace the ConfigStore's before its pods go to update,
// and OnConfigChange is called when that changed anything.
//
// Identity: a pod's UID is a hash of the source name, the node name and the document's
// content (never its file path, never the time), so the same manifest gives the same UID
// after an agent restart or a file rename, and any edit gives a new UID: the pod manager sees
// an edit as "old pod gone, new pod added", as the kubelet does for static pods. A
// metadata.uid written in a manifest is ignored.
package controlplane
