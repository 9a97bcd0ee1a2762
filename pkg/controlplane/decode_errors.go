package controlplane

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// fieldPathError is a decoding problem at a field path, shaped like a field.Error so that
// all messages about a document read alike: "spec.containers[0].imagee: unknown field".
type fieldPathError struct {
	path   string
	detail string
}

func (e *fieldPathError) Error() string { return e.path + ": " + e.detail }

// strictFieldError turns one strict-decoding complaint into "<path>: <what>". The decoder's
// own errors read `unknown field "spec.containers[0].imagee"`; they carry the path through a
// FieldPath method, which is what we rely on. Anything else (YAML duplicate keys, reported
// with line numbers) is kept as it is, on one line.
func strictFieldError(err error) error {
	var fp interface{ FieldPath() string }
	if errors.As(err, &fp) && fp.FieldPath() != "" {
		path := fp.FieldPath()
		what := strings.TrimSpace(strings.TrimSuffix(err.Error(), strconv.Quote(path)))
		if what == "" || what == err.Error() {
			what = "invalid field"
		}
		return &fieldPathError{path: path, detail: what}
	}
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// describeDecodeError explains why data (JSON) did not decode into target. The JSON decoder
// names a mistyped field without list indexes ("spec.containers.ports.containerPort") and a
// bad quantity not at all, so we walk the document against target's type and try each value
// on its own: that finds the exact path, e.g. spec.containers[0].resources.limits[cpu]. When
// the walk finds nothing (it should not happen), the decoder's own message is the best there is.
func describeDecodeError(decodeErr error, data []byte, target any) error {
	errs := typeErrors(data, reflect.TypeOf(target), nil)
	if len(errs) == 0 {
		return decodeErr
	}
	if _, ok := target.(*v1.Secret); ok {
		// A secret's values must not reach the logs, not even a mistyped one.
		for _, e := range errs {
			if e.Type == field.ErrorTypeInvalid {
				e.BadValue = field.OmitValueType{}
			}
		}
	}
	return errs.ToAggregate()
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// typeErrors returns one error per value in raw that cannot be decoded into a t. Unknown
// fields are not its business (strict decoding reports them).
// path is nil at the top; field.Path's methods accept a nil receiver as the root.
func typeErrors(raw json.RawMessage, t reflect.Type, path *field.Path) field.ErrorList {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil // null decodes into anything as its zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// Types that decode themselves (Quantity, IntOrString, Time) are leaves: try them whole.
	pt := reflect.PointerTo(t)
	if pt.Implements(jsonUnmarshaler) || pt.Implements(textUnmarshaler) {
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			return field.ErrorList{field.Invalid(path, shortValue(raw), err.Error())}
		}
		return nil
	}
	mismatch := field.ErrorList{field.Invalid(path, shortValue(raw), "must be "+jsonTypeName(t))}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return mismatch
		}
		fields := jsonFields(t)
		var errs field.ErrorList
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			ft, ok := fields[k]
			if !ok {
				continue
			}
			errs = append(errs, typeErrors(obj[k], ft, path.Child(k))...)
		}
		return errs
	case reflect.Map:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return mismatch
		}
		var errs field.ErrorList
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			errs = append(errs, typeErrors(obj[k], t.Elem(), path.Key(k))...)
		}
		return errs
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			break // []byte is a base64 string: a leaf
		}
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return mismatch
		}
		var errs field.ErrorList
		for i, item := range list {
			errs = append(errs, typeErrors(item, t.Elem(), path.Index(i))...)
		}
		return errs
	case reflect.Interface:
		return nil
	}
	if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
		return mismatch
	}
	return nil
}

// jsonFields maps the JSON names of a struct's fields to their types, looking through
// embedded ",inline" structs (TypeMeta, ObjectMeta in older shapes) as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// jsonTypeName says what JSON a Go type wants, in the words a manifest author uses.
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return fmt.Sprintf("a %s", t)
}

// shortValue is the offending value for a message: short values as written, long ones
// (whole objects) left out so a message stays one readable line.
func shortValue(raw json.RawMessage) any {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil || buf.Len() > 64 {
		return field.OmitValueType{}
	}
	return json.RawMessage(buf.Bytes())
}

// jsonSyntaxError places a JSON syntax error in the file: the decoder counts the bytes it had
// read when it stopped (the bad byte included), which we turn into the line (from 1) and the
// offset (from 0) of that byte. data is the whole file, a JSON manifest being one document.
func jsonSyntaxError(data []byte, se *json.SyntaxError) error {
	pos := int(min(max(se.Offset-1, 0), int64(len(data))))
	line := 1 + bytes.Count(data[:pos], []byte("\n"))
	return fmt.Errorf("invalid JSON at line %d, byte offset %d: %v", line, pos, se)
}
