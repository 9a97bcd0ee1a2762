package controlplane

import (
	"encoding/json"
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The kinds besides Pod that the file source reads: the objects a static pod may mount or
// take its environment from, which the kubelet cannot offer static pods.
const (
	kindConfigMap = "ConfigMap"
	kindSecret    = "Secret"
)

// redactedValue stands in for a secret's content in error messages, as in the API server's.
const redactedValue = "<secret contents redacted>"

// parsedConfig is a good ConfigMap or Secret document: exactly one of configMap and secret is
// set. The objects are never modified once parsed: the ConfigStore hands out copies of them.
type parsedConfig struct {
	configMap *v1.ConfigMap
	secret    *v1.Secret
	document  int
}

func (c parsedConfig) kind() string {
	if c.secret != nil {
		return kindSecret
	}
	return kindConfigMap
}

func (c parsedConfig) meta() *metav1.ObjectMeta {
	if c.secret != nil {
		return &c.secret.ObjectMeta
	}
	return &c.configMap.ObjectMeta
}

// key is the object's identity: kind, namespace and name.
func (c parsedConfig) key() string {
	return c.kind() + "/" + c.meta().Namespace + "/" + c.meta().Name
}

// parseConfigMap decodes, defaults and validates a ConfigMap document whose content UID is uid.
func parseConfigMap(doc document, jsonData []byte, uid types.UID) (*parsedConfig, error) {
	cm := &v1.ConfigMap{}
	strictErrs, err := decodeStrict(doc, jsonData, cm)
	if err != nil {
		return nil, err
	}
	defaultConfigMeta(&cm.ObjectMeta, uid)
	all := strictErrs
	for _, fe := range validateConfigMap(cm) {
		all = append(all, fe)
	}
	if len(all) > 0 {
		return nil, utilerrors.NewAggregate(all)
	}
	return &parsedConfig{configMap: cm, document: doc.index}, nil
}

// parseSecret decodes, defaults and validates a Secret document whose content UID is uid.
// As the API server does on write, stringData is merged into data (stringData wins) and
// then dropped, and an omitted type is Opaque.
func parseSecret(doc document, jsonData []byte, uid types.UID) (*parsedConfig, error) {
	sec := &v1.Secret{}
	strictErrs, err := decodeStrict(doc, jsonData, sec)
	if err != nil {
		return nil, err
	}
	defaultConfigMeta(&sec.ObjectMeta, uid)
	if sec.Type == "" {
		sec.Type = v1.SecretTypeOpaque
	}
	all := strictErrs
	for _, fe := range validateSecret(sec) {
		all = append(all, fe)
	}
	if len(all) > 0 {
		return nil, utilerrors.NewAggregate(all)
	}
	return &parsedConfig{secret: sec, document: doc.index}, nil
}

// defaultConfigMeta gives a ConfigMap or Secret the API server's namespace default and its
// content UID. Unlike a static pod's, its name keeps no node suffix: pods on this node refer
// to it by the name written.
func defaultConfigMeta(meta *metav1.ObjectMeta, uid types.UID) {
	if meta.Namespace == "" {
		meta.Namespace = metav1.NamespaceDefault
	}
	meta.UID = uid
}

func validateConfigMeta(meta *metav1.ObjectMeta) field.ErrorList {
	fld := field.NewPath("metadata")
	var errs field.ErrorList
	if meta.Name == "" {
		errs = append(errs, field.Required(fld.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
			errs = append(errs, field.Invalid(fld.Child("name"), meta.Name, msg))
		}
	}
	for _, msg := range validation.IsDNS1123Label(meta.Namespace) {
		errs = append(errs, field.Invalid(fld.Child("namespace"), meta.Namespace, msg))
	}
	errs = append(errs, metav1validation.ValidateLabels(meta.Labels, fld.Child("labels"))...)
	return append(errs, apivalidation.ValidateAnnotations(meta.Annotations, fld.Child("annotations"))...)
}

// validateConfigMap is the API server's ConfigMap validation.
func validateConfigMap(cm *v1.ConfigMap) field.ErrorList {
	errs := validateConfigMeta(&cm.ObjectMeta)
	errs = append(errs, validateKeys(cm.Data, field.NewPath("data"))...)
	errs = append(errs, validateKeys(cm.BinaryData, field.NewPath("binaryData"))...)
	size := 0
	for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
		if _, ok := cm.BinaryData[k]; ok {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, "duplicate of key present in binaryData"))
		}
		size += len(cm.Data[k])
	}
	for _, v := range cm.BinaryData {
		size += len(v)
	}
	if size > v1.MaxSecretSize { // the API server's limit for ConfigMaps too
		errs = append(errs, field.TooLong(field.NewPath("data"), "", v1.MaxSecretSize))
	}
	return errs
}

// validateSecret is the API server's Secret validation for what the agent uses, done on
// the written keys, then stringData is merged into data. A secret for image pulls must hold
// the docker config its type promises.
func validateSecret(sec *v1.Secret) field.ErrorList {
	errs := validateConfigMeta(&sec.ObjectMeta)
	errs = append(errs, validateKeys(sec.Data, field.NewPath("data"))...)
	errs = append(errs, validateKeys(sec.StringData, field.NewPath("stringData"))...)
	if len(sec.StringData) > 0 && sec.Data == nil {
		sec.Data = make(map[string][]byte, len(sec.StringData))
	}
	for k, v := range sec.StringData {
		sec.Data[k] = []byte(v)
	}
	sec.StringData = nil

	size := 0
	for _, v := range sec.Data {
		size += len(v)
	}
	if size > v1.MaxSecretSize {
		errs = append(errs, field.TooLong(field.NewPath("data"), "", v1.MaxSecretSize))
	}
	switch sec.Type {
	case v1.SecretTypeDockerConfigJson:
		errs = append(errs, validateDockerConfig(sec.Data, v1.DockerConfigJsonKey, true)...)
	case v1.SecretTypeDockercfg:
		errs = append(errs, validateDockerConfig(sec.Data, v1.DockerConfigKey, false)...)
	}
	return errs
}

// validateDockerConfig checks that data[key] is a docker config: a JSON object, which for
// the current format (wrapped) must hold an "auths" object. The content is never quoted.
func validateDockerConfig(data map[string][]byte, key string, wrapped bool) field.ErrorList {
	fld := field.NewPath("data").Key(key)
	raw, ok := data[key]
	if !ok {
		return field.ErrorList{field.Required(fld, "")}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return field.ErrorList{field.Invalid(fld, redactedValue, "must be a JSON object")}
	}
	if !wrapped {
		return nil
	}
	var auths map[string]json.RawMessage
	if err := json.Unmarshal(obj["auths"], &auths); err != nil || auths == nil {
		return field.ErrorList{field.Invalid(fld, redactedValue, `must have an "auths" object`)}
	}
	return nil
}

// validateKeys checks the keys of a ConfigMap's or Secret's data, which become file names
// in volumes and variable names in the environment.
func validateKeys[V any](m map[string]V, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range slices.Sorted(maps.Keys(m)) {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(fld.Key(k), k, msg))
		}
	}
	return errs
}

// configSet is the ConfigMaps and Secrets of one scan, by namespace/name.
type configSet struct {
	configMaps map[string]*v1.ConfigMap
	secrets    map[string]*v1.Secret
}

func (s *configSet) add(c parsedConfig) {
	key := c.meta().Namespace + "/" + c.meta().Name
	if c.secret != nil {
		if s.secrets == nil {
			s.secrets = map[string]*v1.Secret{}
		}
		s.secrets[key] = c.secret
		return
	}
	if s.configMaps == nil {
		s.configMaps = map[string]*v1.ConfigMap{}
	}
	s.configMaps[key] = c.configMap
}
