package controlplane

// SourceFile is the name of the file source, used as the pods' config source.
const SourceFile = "file"

// Annotations set on every pod a source produces. The first three are the kubelet's own names
// so that tools that know static pods read ours the same way.
const (
	// AnnotationConfigSource names the source the pod came from, e.g. SourceFile.
	AnnotationConfigSource = "kubernetes.io/config.source"
	// AnnotationConfigHash holds the pod's UID, which is the hash of its content.
	AnnotationConfigHash = "kubernetes.io/config.hash"
	// AnnotationConfigSeen is the time (RFC 3339 with nanoseconds, UTC) the source first saw
	// this exact content. It is informational and never part of the UID.
	AnnotationConfigSeen = "kubernetes.io/config.seen"
	// AnnotationManifestFile says where the pod was defined: "<file name relative to the
	// directory>#<document index>", e.g. "web.yaml#0".
	AnnotationManifestFile = "nodeagent.io/manifest-file"
)
