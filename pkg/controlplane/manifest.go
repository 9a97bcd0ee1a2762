package controlplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	serjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// ManifestError is one bad document of a manifest file. Its message reads
// "<file>: document <n>: <what is wrong, with field paths>", e.g.
// "web.yaml: document 0: spec.containers[0].image: Required value".
type ManifestError struct {
	// File is the file name as given to ParseManifests (relative to the manifest directory
	// when it comes from the file source).
	File string
	// Document is the 0-based index of the document among the file's non-empty documents,
	// so a leading comment block or a stray "---" does not shift the count.
	Document int
	// Err says what is wrong. Field errors name the field by its path
	// (spec.containers[0].image); several are joined as "[a, b]", as the API server does.
	Err error
}

func (e *ManifestError) Error() string {
	return fmt.Sprintf("%s: document %d: %v", e.File, e.Document, e.Err)
}

func (e *ManifestError) Unwrap() error { return e.Err }

// ParseManifests is the pure part of the file source: the pods found in one file's content,
// plus one *ManifestError per bad document. name is the file name shown in errors; a name
// ending in ".json" is read as one JSON document, anything else as YAML that may hold several
// "---" separated documents. Empty documents are skipped. ConfigMap and Secret documents are
// decoded and checked like pods, so their errors come back here too, but the objects
// themselves are served by the file source's ConfigStore. Documents of other kinds are
// skipped without an error (the file source logs them).
//
// The pods come back defaulted for nodeName (name suffixed with "-<nodeName>", spec.nodeName
// set, the API server's defaults), with their content-derived UID and the source annotations;
// config.seen is the current time. Any metadata.uid in the manifest is ignored.
func ParseManifests(name string, data []byte, nodeName string) ([]*v1.Pod, []error) {
	r := parseFile(name, data, nodeName, time.Now())
	var pods []*v1.Pod
	for _, p := range r.pods {
		pods = append(pods, p.pod)
	}
	return pods, r.errs
}

// parsedFile is everything learned from one file's content.
type parsedFile struct {
	pods    []parsedPod    // good Pod documents, in document order
	configs []parsedConfig // good ConfigMap and Secret documents, in document order
	errs    []error        // one *ManifestError per bad document, in document order
	ignored []ignoredDocument
}

// parsedPod is a good document's pod and where it came from.
type parsedPod struct {
	pod          *v1.Pod
	document     int
	manifestName string // metadata.name as written, before the node suffix
}

// ignoredDocument is a well-formed document of a kind the source does not handle.
type ignoredDocument struct {
	document   int
	apiVersion string
	kind       string
}

// document is one non-empty document of a file, or the error that stopped it from being read.
type document struct {
	index  int
	data   []byte // as written: a slice of the file's bytes
	json   []byte // data as JSON (data itself for a JSON file); nil when err is set
	isJSON bool
	err    error
}

// parseFile parses a file's documents one at a time, as the splitter hands them out: what is
// held at any moment is the file's bytes, one document's JSON and decoded object, and what
// was kept of the documents before it.
func parseFile(name string, data []byte, nodeName string, now time.Time) parsedFile {
	var out parsedFile
	// firstDoc remembers which document first defined a namespace/name (per kind), so a
	// second one in the same file is reported rather than silently shadowing it.
	firstDoc := map[string]int{}
	eachDocument(name, data, func(doc document) {
		fail := func(err error) {
			out.errs = append(out.errs, &ManifestError{File: name, Document: doc.index, Err: err})
		}
		if doc.err != nil {
			fail(doc.err)
			return
		}
		d, err := parseDocument(doc, nodeName)
		switch {
		case err != nil:
			fail(err)
		case d.ignored != nil:
			out.ignored = append(out.ignored, *d.ignored)
		case d.config != nil:
			c := *d.config
			if first, ok := firstDoc[c.key()]; ok {
				fail(duplicateError(c.kind(), c.meta().Namespace+"/"+c.meta().Name, c.meta().Name,
					"document "+strconv.Itoa(first)))
				return
			}
			firstDoc[c.key()] = doc.index
			out.configs = append(out.configs, c)
		default:
			p := *d.pod
			key := "Pod/" + podKey(p.pod)
			if first, ok := firstDoc[key]; ok {
				fail(duplicatePodError(p, "document "+strconv.Itoa(first)))
				return
			}
			firstDoc[key] = doc.index
			setSourceAnnotations(p.pod, SourceFile, name+"#"+strconv.Itoa(doc.index), now)
			out.pods = append(out.pods, p)
		}
	})
	return out
}

// podKey is the pod's namespace/name, the identity the API server would enforce.
func podKey(pod *v1.Pod) string { return pod.Namespace + "/" + pod.Name }

// duplicatePodError says that p's pod is already defined elsewhere (where: "document 0" or
// "a.yaml#0").
func duplicatePodError(p parsedPod, where string) error {
	return duplicateError("pod", podKey(p.pod), p.manifestName, where)
}

// duplicateError says that the object of kind (in lower case, as the API server's messages
// name it) at key namespace/name, written as manifestName, is already defined elsewhere.
func duplicateError(kind, key, manifestName, where string) error {
	fe := field.Duplicate(field.NewPath("metadata", "name"), manifestName)
	fe.Detail = fmt.Sprintf("%s %s is already defined by %s", strings.ToLower(kind), key, where)
	return fe
}

// eachDocument calls fn with each non-empty document of a file, in order. A name ending in
// ".json" is one JSON document; anything else is YAML that may hold several "---" separated
// documents. A document that is not UTF-8, nests too deeply, or cannot even be split off or
// read as YAML comes with err set, so it counts and is reported like any other bad document.
func eachDocument(name string, data []byte, fn func(document)) {
	if strings.EqualFold(filepath.Ext(name), ".json") {
		trimmed := bytes.TrimSpace(data)
		if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
			return
		}
		doc := document{index: 0, data: data, json: data, isJSON: true}
		if doc.err = checkUTF8(docSpan{data: data, line: 1}); doc.err == nil {
			doc.err = checkNesting(data)
		}
		fn(doc)
		return
	}
	docs := newYAMLDocuments(data)
	index := 0
	for {
		span, ok, err := docs.next()
		if !ok {
			return
		}
		doc := document{index: index, data: span.data, err: err}
		if err == nil {
			if len(bytes.TrimSpace(span.data)) == 0 {
				continue
			}
			if doc.err = checkUTF8(span); doc.err == nil {
				// Converted once, here: what is empty (comments only, or null) is only known
				// from the conversion, and parseDocument goes on from its result.
				j, err := yaml.YAMLToJSON(span.data)
				if err == nil && bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
					continue
				}
				doc.json, doc.err = j, err
			}
		}
		fn(doc)
		index++
	}
}

// parsedDocument is what a good document gave: exactly one of its fields is set.
type parsedDocument struct {
	pod     *parsedPod
	config  *parsedConfig
	ignored *ignoredDocument // a well-formed document of another kind
}

// parseDocument decodes, defaults and validates one document. It returns a parsed document
// or an error.
func parseDocument(doc document, nodeName string) (parsedDocument, error) {
	jsonData := doc.json
	if !doc.isJSON {
		// The YAML parser stops at 10000 levels of flow collections and of indentation each;
		// together they can still make JSON that nests deeper.
		if err := checkNesting(jsonData); err != nil {
			return parsedDocument{}, err
		}
	}

	var tm metav1.TypeMeta
	if err := json.Unmarshal(jsonData, &tm); err != nil {
		if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
			// Only a JSON file can get here with bad syntax: converted YAML is valid JSON.
			return parsedDocument{}, jsonSyntaxError(jsonData, se)
		}
		return parsedDocument{}, errors.New("a manifest document must be an object with apiVersion and kind")
	}
	var errs field.ErrorList
	if tm.Kind == "" {
		errs = append(errs, field.Required(field.NewPath("kind"), ""))
	}
	if tm.APIVersion == "" {
		errs = append(errs, field.Required(field.NewPath("apiVersion"), ""))
	}
	if len(errs) > 0 {
		return parsedDocument{}, errs.ToAggregate()
	}
	switch tm.Kind {
	case "Pod", kindConfigMap, kindSecret:
	default:
		return parsedDocument{ignored: &ignoredDocument{document: doc.index, apiVersion: tm.APIVersion, kind: tm.Kind}}, nil
	}
	if tm.APIVersion != "v1" {
		return parsedDocument{}, field.NotSupported(field.NewPath("apiVersion"), tm.APIVersion, []string{"v1"})
	}
	uid, err := contentUID(SourceFile, nodeName, jsonData)
	if err != nil {
		return parsedDocument{}, err
	}
	switch tm.Kind {
	case kindConfigMap:
		c, err := parseConfigMap(doc, jsonData, uid)
		return parsedDocument{config: c}, err
	case kindSecret:
		c, err := parseSecret(doc, jsonData, uid)
		return parsedDocument{config: c}, err
	}
	p, err := parsePod(doc, jsonData, nodeName, uid)
	return parsedDocument{pod: p}, err
}

// parsePod decodes, defaults and validates a Pod document whose content UID is uid.
func parsePod(doc document, jsonData []byte, nodeName string, uid types.UID) (*parsedPod, error) {
	pod := &v1.Pod{}
	strictErrs, err := decodeStrict(doc, jsonData, pod)
	if err != nil {
		return nil, err
	}
	manifestName := pod.Name
	applyDefaults(pod, nodeName)
	pod.UID = uid
	all := strictErrs
	for _, fe := range validatePod(pod, manifestName) {
		all = append(all, fe)
	}
	if len(all) > 0 {
		return nil, utilerrors.NewAggregate(all)
	}
	return &parsedPod{pod: pod, document: doc.index, manifestName: manifestName}, nil
}

// podCodecs holds the strict decoders. They are built once because a scheme and its
// serializers are immutable after construction and safe for concurrent use; this is not
// mutable package state.
var podCodecs = sync.OnceValue(func() struct{ yaml, json runtime.Decoder } {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		// Registering the built-in core/v1 types into a fresh scheme cannot fail.
		panic(fmt.Sprintf("register core/v1 types: %v", err))
	}
	newCodec := func(isYAML bool) runtime.Decoder {
		return serjson.NewSerializerWithOptions(serjson.DefaultMetaFactory, scheme, scheme,
			serjson.SerializerOptions{Yaml: isYAML, Strict: true})
	}
	return struct{ yaml, json runtime.Decoder }{yaml: newCodec(true), json: newCodec(false)}
})

// decodeStrict decodes a document strictly into into (a *v1.Pod, *v1.ConfigMap, ...).
// Unknown and duplicate fields do not stop the decoding; they come back as strictErrs, each
// naming its field path, and make the document bad. A value of the wrong type (a string for a
// port, a malformed quantity) does stop it; err then names the offending field, which the
// decoder itself does not do well.
func decodeStrict(doc document, jsonData []byte, into runtime.Object) (strictErrs []error, err error) {
	codec := podCodecs().yaml
	if doc.isJSON {
		codec = podCodecs().json
	}
	obj, _, err := codec.Decode(doc.data, nil, into)
	if err != nil {
		se, ok := runtime.AsStrictDecodingError(err)
		if !ok {
			return nil, describeDecodeError(err, jsonData, into)
		}
		for _, e := range se.Errors() {
			strictErrs = append(strictErrs, strictFieldError(e))
		}
	}
	if obj != into {
		// Decode into an object returns that object; anything else is a decoder bug.
		return nil, fmt.Errorf("decoded %T, not a %T", obj, into)
	}
	return strictErrs, nil
}
