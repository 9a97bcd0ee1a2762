package controlplane

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
)

// contentUID derives a pod's UID from where it comes from and what it says:
//
//	hex(sha256(source NUL nodeName NUL canonicalJSON(document)))[:32]
//
// Inputs, and why:
//   - the source and node name, so the same manifest on two nodes (or from two sources) is
//     two pods;
//   - the document's content, so any edit gives a new UID and the pod manager replaces the
//     pod, as the kubelet does with static pods;
//   - not the file path, so renaming or moving a document between files keeps its pod;
//   - not the time, so an agent restart finds the same UIDs on its running containers.
//
// The canonical form is the document as generic JSON with sorted keys, numbers exactly as
// written, and metadata.uid removed (a manifest's uid is ignored). Hashing that rather than
// the typed Pod keeps UIDs unchanged by comments, formatting, YAML versus JSON, and by
// upgrades of k8s.io/api or of our defaulting, any of which would otherwise restart every
// static pod on the node. 32 hex digits (128 bits) is the length of the kubelet's own
// static-pod UIDs.
func contentUID(source, nodeName string, jsonDoc []byte) (types.UID, error) {
	dec := json.NewDecoder(bytes.NewReader(jsonDoc))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return "", fmt.Errorf("canonicalize document: %w", err)
	}
	if meta, ok := doc["metadata"].(map[string]any); ok {
		delete(meta, "uid")
	}
	canonical, err := json.Marshal(doc) // encoding/json writes map keys sorted
	if err != nil {
		return "", fmt.Errorf("canonicalize document: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", source, nodeName)
	h.Write(canonical)
	return types.UID(hex.EncodeToString(h.Sum(nil))[:32]), nil
}
