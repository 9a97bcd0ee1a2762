package controlplane

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	v1 "k8s.io/api/core/v1"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// configMapYAML is a minimal valid ConfigMap manifest named name holding key=value.
func configMapYAML(name, key, value string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  " + key + ": " + value + "\n"
}

func configKeys(configs []parsedConfig) []string {
	var keys []string
	for _, c := range configs {
		keys = append(keys, c.key())
	}
	return keys
}

func TestParseManifestsConfigMapsAndSecrets(t *testing.T) {
	tests := []struct {
		name        string
		file        string
		data        string
		wantConfigs []string // kind/namespace/name
		wantPods    []string
		wantErrs    []string // exact messages
		check       func(t *testing.T, configs []parsedConfig)
	}{
		{
			name:        "good ConfigMap keeps its name, beside a pod",
			file:        "app.yaml",
			data:        configMapYAML("app-config", "app.conf", "x") + "---\n" + podYAML("app"),
			wantConfigs: []string{"ConfigMap/default/app-config"},
			wantPods:    []string{"default/app-node-1"},
			check: func(t *testing.T, configs []parsedConfig) {
				cm := configs[0].configMap
				if cm.Data["app.conf"] != "x" || cm.UID == "" {
					t.Errorf("configmap = %+v, want data app.conf=x and a UID", cm)
				}
			},
		},
		{
			name: "stringData is merged into data and wins; type defaults to Opaque",
			file: "sec.yaml",
			data: `apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: kube-system}
data:
  user: ` + b64("old") + `
  keep: ` + b64("kept") + `
stringData:
  user: new
  added: yes-really
`,
			wantConfigs: []string{"Secret/kube-system/creds"},
			check: func(t *testing.T, configs []parsedConfig) {
				sec := configs[0].secret
				got := map[string]string{}
				for k, v := range sec.Data {
					got[k] = string(v)
				}
				want := map[string]string{"user": "new", "keep": "kept", "added": "yes-really"}
				if len(got) != len(want) || got["user"] != want["user"] || got["keep"] != want["keep"] || got["added"] != want["added"] {
					t.Errorf("data = %q, want %q", got, want)
				}
				if sec.StringData != nil || sec.Type != v1.SecretTypeOpaque {
					t.Errorf("stringData %q, type %q; want none and Opaque", sec.StringData, sec.Type)
				}
			},
		},
		{
			name:     "bad key",
			file:     "cm.yaml",
			data:     configMapYAML("cm", `"bad/key"`, "x"),
			wantErrs: []string{`cm.yaml: document 0: data[bad/key]: Invalid value: "bad/key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`},
		},
		{
			name:     "key in both data and binaryData",
			file:     "cm.yaml",
			data:     configMapYAML("cm", "k", "x") + "binaryData:\n  k: " + b64("y") + "\n",
			wantErrs: []string{`cm.yaml: document 0: data[k]: Invalid value: "k": duplicate of key present in binaryData`},
		},
		{
			name:     "unknown field is reported with its path",
			file:     "cm.yaml",
			data:     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, labelz: {a: b}}\n",
			wantErrs: []string{"cm.yaml: document 0: metadata.labelz: unknown field"},
		},
		{
			name:     "name and namespace are checked",
			file:     "cm.json",
			data:     `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": "a.b"}}`,
			wantErrs: []string{`cm.json: document 0: [metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'), metadata.namespace: Invalid value: "a.b": must not contain dots]`},
		},
		{
			name:     "ConfigMap of another apiVersion is an error",
			file:     "cm.yaml",
			data:     strings.Replace(configMapYAML("cm", "k", "x"), "apiVersion: v1", "apiVersion: v2", 1),
			wantErrs: []string{`cm.yaml: document 0: apiVersion: Unsupported value: "v2": supported values: "v1"`},
		},
		{
			name:     "dockerconfigjson without auths",
			file:     "pull.yaml",
			data:     "apiVersion: v1\nkind: Secret\nmetadata: {name: pull}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"credsStore\": \"x\"}'\n",
			wantErrs: []string{`pull.yaml: document 0: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": must have an "auths" object`},
		},
		{
			name:     "dockerconfigjson without its key",
			file:     "pull.yaml",
			data:     "apiVersion: v1\nkind: Secret\nmetadata: {name: pull}\ntype: kubernetes.io/dockerconfigjson\nstringData: {other: x}\n",
			wantErrs: []string{`pull.yaml: document 0: data[.dockerconfigjson]: Required value`},
		},
		{
			name:        "good dockerconfigjson",
			file:        "pull.yaml",
			data:        "apiVersion: v1\nkind: Secret\nmetadata: {name: pull}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\": {}}'\n",
			wantConfigs: []string{"Secret/default/pull"},
		},
		{
			// The value is not base64; it must not appear in the message, which goes to logs.
			name:     "a secret's mistyped value is not quoted",
			file:     "sec.yaml",
			data:     "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  password: hunter2\n",
			wantErrs: []string{`sec.yaml: document 0: data[password]: Invalid value: must be a base64 string`},
		},
		{
			name: "same name twice in one file: the first wins; other kinds may share it",
			file: "dup.yaml",
			data: configMapYAML("app", "k", "one") + "---\n" + configMapYAML("app", "k", "two") +
				"---\napiVersion: v1\nkind: Secret\nmetadata: {name: app}\n---\n" + podYAML("app"),
			wantConfigs: []string{"ConfigMap/default/app", "Secret/default/app"},
			wantPods:    []string{"default/app-node-1"},
			wantErrs:    []string{`dup.yaml: document 1: metadata.name: Duplicate value: "app": configmap default/app is already defined by document 0`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parsed := parseFile(tc.file, []byte(tc.data), testNode, time.Now())
			if got := configKeys(parsed.configs); !slices.Equal(got, tc.wantConfigs) {
				t.Errorf("configs = %q, want %q", got, tc.wantConfigs)
			}
			var pods []*v1.Pod
			for _, p := range parsed.pods {
				pods = append(pods, p.pod)
			}
			if got := podNames(pods); !slices.Equal(got, tc.wantPods) {
				t.Errorf("pods = %q, want %q", got, tc.wantPods)
			}
			// ParseManifests reports the same errors.
			_, errs := ParseManifests(tc.file, []byte(tc.data), testNode)
			if got := errorStrings(errs); !slices.Equal(got, tc.wantErrs) {
				t.Errorf("errors =\n  %q\nwant\n  %q", got, tc.wantErrs)
			}
			if tc.check != nil && len(parsed.configs) > 0 {
				tc.check(t, parsed.configs)
			}
		})
	}
}

func TestConfigDuplicateAcrossFilesFirstFileWins(t *testing.T) {
	dir := t.TempDir()
	logger, hook := logtest.NewNullLogger()
	sc := newScanner(dir, testNode, logrus.NewEntry(logger), time.Now)
	writeFile(t, dir, "a.yaml", configMapYAML("app", "k", "from-a"))
	writeFile(t, dir, "b.yaml", configMapYAML("app", "k", "from-b"))
	for range 2 {
		sc.scan()
		if got := sc.configs.configMaps["default/app"].Data["k"]; got != "from-a" {
			t.Fatalf("configmap holds %q, want the one from a.yaml", got)
		}
	}
	entries := hook.AllEntries()
	if len(entries) != 1 || entries[0].Data["file"] != "b.yaml" || entries[0].Data["definedBy"] != "a.yaml#0" {
		t.Fatalf("logs = %v, want one about b.yaml naming a.yaml#0", entries)
	}
	want := `metadata.name: Duplicate value: "app": configmap default/app is already defined by a.yaml#0`
	if got := entries[0].Data[logrus.ErrorKey].(error).Error(); got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}
