package controlplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const testNode = "node-1"

// podYAML is a minimal valid pod manifest named name.
func podYAML(name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  containers:
  - name: app
    image: busybox:1.36
`, name)
}

// podNames returns the pods' names, in order.
func podNames(pods []*v1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	return names
}

func errorStrings(errs []error) []string {
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

func TestParseManifests(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		data     string
		wantPods []string // namespace/name
		wantErrs []string // exact messages
	}{
		{
			name:     "one good pod",
			file:     "web.yaml",
			data:     podYAML("web"),
			wantPods: []string{"default/web-node-1"},
		},
		{
			name: "multi-document file with a bad middle document keeps the others",
			file: "multi.yaml",
			data: podYAML("first") + "---\n" + `apiVersion: v1
kind: Pod
metadata:
  name: second
spec:
  containers:
  - name: app
` + "---\n" + podYAML("third"),
			wantPods: []string{"default/first-node-1", "default/third-node-1"},
			wantErrs: []string{"multi.yaml: document 1: spec.containers[0].image: Required value"},
		},
		{
			name: "unknown field is reported with its path",
			file: "typo.yaml",
			data: `apiVersion: v1
kind: Pod
metadata:
  name: typo
spec:
  containers:
  - name: app
    image: busybox
    imagee: busybox
`,
			wantErrs: []string{"typo.yaml: document 0: spec.containers[0].imagee: unknown field"},
		},
		{
			name: "unknown field and missing image are reported together",
			file: "typo.yaml",
			data: `apiVersion: v1
kind: Pod
metadata:
  name: typo
spec:
  containers:
  - name: app
    imagee: busybox
`,
			wantErrs: []string{"typo.yaml: document 0: [spec.containers[0].imagee: unknown field, spec.containers[0].image: Required value]"},
		},
		{
			name: "wrong type is reported with its full path",
			file: "type.yaml",
			data: `apiVersion: v1
kind: Pod
metadata:
  name: type
spec:
  containers:
  - name: app
    image: busybox
    ports:
    - containerPort: 80
    - containerPort: "http"
`,
			wantErrs: []string{`type.yaml: document 0: spec.containers[0].ports[1].containerPort: Invalid value: "http": must be an integer`},
		},
		{
			name: "bad quantity is reported with its path",
			file: "qty.yaml",
			data: `apiVersion: v1
kind: Pod
metadata:
  name: qty
spec:
  containers:
  - name: app
    image: busybox
    resources:
      limits:
        cpu: lots
`,
			wantErrs: []string{`qty.yaml: document 0: spec.containers[0].resources.limits[cpu]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		},
		{
			// Line numbers count from the start of the document.
			name:     "YAML syntax error",
			file:     "syntax.yaml",
			data:     "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   bad: indent\n",
			wantErrs: []string{"syntax.yaml: document 0: yaml: line 5: mapping values are not allowed in this context"},
		},
		{
			name:     "missing image",
			file:     "noimage.yaml",
			data:     "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: app}]\n",
			wantErrs: []string{"noimage.yaml: document 0: spec.containers[0].image: Required value"},
		},
		{
			name:     "another kind is skipped without an error",
			file:     "mixed.yaml",
			data:     "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\n---\n" + podYAML("web"),
			wantPods: []string{"default/web-node-1"},
		},
		{
			name:     "Pod of another apiVersion is an error",
			file:     "v2.yaml",
			data:     strings.Replace(podYAML("web"), "apiVersion: v1", "apiVersion: v2", 1),
			wantErrs: []string{`v2.yaml: document 0: apiVersion: Unsupported value: "v2": supported values: "v1"`},
		},
		{
			name:     "kind and apiVersion are required",
			file:     "bare.yaml",
			data:     "metadata: {name: x}\n",
			wantErrs: []string{"bare.yaml: document 0: [kind: Required value, apiVersion: Required value]"},
		},
		{
			name:     "a document that is not an object",
			file:     "list.yaml",
			data:     "- apiVersion: v1\n  kind: Pod\n",
			wantErrs: []string{"list.yaml: document 0: a manifest document must be an object with apiVersion and kind"},
		},
		{
			name: "JSON file is one document",
			file: "web.json",
			data: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "kube-system"},
			        "spec": {"containers": [{"name": "app", "image": "busybox"}]}}`,
			wantPods: []string{"kube-system/web-node-1"},
		},
		{
			name:     "JSON unknown field",
			file:     "bad.json",
			data:     `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "busybox", "cmd": ["x"]}]}}`,
			wantErrs: []string{"bad.json: document 0: spec.containers[0].cmd: unknown field"},
		},
		{
			name:     "empty and comment-only documents are skipped and not counted",
			file:     "sparse.yaml",
			data:     "# header comment\n---\n\n---\n" + podYAML("one") + "---\n# nothing\n---\n" + "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec: {containers: []}\n---\n",
			wantPods: []string{"default/one-node-1"},
			wantErrs: []string{"sparse.yaml: document 1: spec.containers: Required value: must have at least one container"},
		},
		{
			name: "empty file",
			file: "empty.yaml",
			data: "",
		},
		{
			name:     "empty JSON file",
			file:     "empty.json",
			data:     "  \n",
			wantPods: nil,
		},
		{
			name:     "same name twice in one file: the first wins",
			file:     "dup.yaml",
			data:     podYAML("web") + "---\n" + strings.Replace(podYAML("web"), "busybox:1.36", "busybox:1.37", 1),
			wantPods: []string{"default/web-node-1"},
			wantErrs: []string{`dup.yaml: document 1: metadata.name: Duplicate value: "web": pod default/web-node-1 is already defined by document 0`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pods, errs := ParseManifests(tc.file, []byte(tc.data), testNode)
			if got := podNames(pods); !slices.Equal(got, tc.wantPods) {
				t.Errorf("pods = %q, want %q", got, tc.wantPods)
			}
			if got := errorStrings(errs); !slices.Equal(got, tc.wantErrs) {
				t.Errorf("errors =\n  %q\nwant\n  %q", got, tc.wantErrs)
			}
			for _, err := range errs {
				var me *ManifestError
				if !errors.As(err, &me) || me.File != tc.file {
					t.Errorf("error %v is not a *ManifestError for %s", err, tc.file)
				}
			}
		})
	}
}

func TestParseManifestsAppliesDefaults(t *testing.T) {
	data := `apiVersion: v1
kind: Pod
metadata:
  name: web
  uid: 11111111-2222-3333-4444-555555555555
  annotations:
    team: edge
spec:
  volumes:
  - name: scratch
  containers:
  - name: app
    image: localhost:5000/web
    ports:
    - containerPort: 8080
    resources:
      limits: {cpu: 500m}
    readinessProbe:
      httpGet: {port: 8080}
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
  initContainers:
  - name: init
    image: busybox:1.36
`
	pods, errs := ParseManifests("web.yaml", []byte(data), "Node-1")
	if len(errs) > 0 || len(pods) != 1 {
		t.Fatalf("ParseManifests: pods %d, errors %v", len(pods), errs)
	}
	pod := pods[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"namespace", pod.Namespace, "default"},
		{"name has the lower-cased node suffix", pod.Name, "web-node-1"},
		{"spec.nodeName", pod.Spec.NodeName, "Node-1"},
		{"restartPolicy", pod.Spec.RestartPolicy, v1.RestartPolicyAlways},
		{"dnsPolicy", pod.Spec.DNSPolicy, v1.DNSClusterFirst},
		{"terminationGracePeriodSeconds", *pod.Spec.TerminationGracePeriodSeconds, int64(30)},
		{"schedulerName", pod.Spec.SchedulerName, "default-scheduler"},
		{"securityContext set", pod.Spec.SecurityContext != nil, true},
		{"app imagePullPolicy (no tag)", pod.Spec.Containers[0].ImagePullPolicy, v1.PullAlways},
		{"init imagePullPolicy (tag)", pod.Spec.InitContainers[0].ImagePullPolicy, v1.PullIfNotPresent},
		{"terminationMessagePath", pod.Spec.Containers[0].TerminationMessagePath, "/dev/termination-log"},
		{"terminationMessagePolicy", pod.Spec.InitContainers[0].TerminationMessagePolicy, v1.TerminationMessageReadFile},
		{"port protocol", pod.Spec.Containers[0].Ports[0].Protocol, v1.ProtocolTCP},
		{"requests default to limits", pod.Spec.Containers[0].Resources.Requests.Cpu().Cmp(resource.MustParse("500m")), 0},
		{"probe period", pod.Spec.Containers[0].ReadinessProbe.PeriodSeconds, int32(10)},
		{"probe path", pod.Spec.Containers[0].ReadinessProbe.HTTPGet.Path, "/"},
		{"source-less volume is an emptyDir", pod.Spec.Volumes[0].EmptyDir != nil, true},
		{"manifest uid is ignored", pod.UID != "11111111-2222-3333-4444-555555555555", true},
		{"UID is 32 hex digits", len(pod.UID), 32},
		{"config.source", pod.Annotations[AnnotationConfigSource], "file"},
		{"config.hash is the UID", pod.Annotations[AnnotationConfigHash], string(pod.UID)},
		{"config.seen set", pod.Annotations[AnnotationConfigSeen] != "", true},
		{"manifest-file", pod.Annotations[AnnotationManifestFile], "web.yaml#0"},
		{"user annotation kept", pod.Annotations["team"], "edge"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestParseManifestsKeepsExplicitValues(t *testing.T) {
	data := `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: infra}
spec:
  restartPolicy: Never
  dnsPolicy: Default
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    ports: [{containerPort: 53, protocol: UDP}]
`
	pods, errs := ParseManifests("web.yaml", []byte(data), testNode)
	if len(errs) > 0 || len(pods) != 1 {
		t.Fatalf("ParseManifests: pods %d, errors %v", len(pods), errs)
	}
	spec := pods[0].Spec
	if pods[0].Namespace != "infra" || spec.RestartPolicy != v1.RestartPolicyNever || spec.DNSPolicy != v1.DNSDefault ||
		*spec.TerminationGracePeriodSeconds != 0 || spec.Containers[0].ImagePullPolicy != v1.PullNever ||
		spec.Containers[0].Ports[0].Protocol != v1.ProtocolUDP {
		t.Errorf("explicit values were overridden: namespace %s, spec %+v", pods[0].Namespace, spec)
	}
}

func TestDefaultPullPolicy(t *testing.T) {
	tests := []struct {
		image string
		want  v1.PullPolicy
	}{
		{"x", v1.PullAlways},
		{"x:latest", v1.PullAlways},
		{"x:1.0", v1.PullIfNotPresent},
		{"x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", v1.PullIfNotPresent},
		{"x:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", v1.PullIfNotPresent},
		// As in Kubernetes: the tag decides, even next to a digest.
		{"x:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", v1.PullAlways},
		{"localhost:5000/x", v1.PullAlways},
		{"localhost:5000/x:latest", v1.PullAlways},
		{"localhost:5000/x:1.0", v1.PullIfNotPresent},
		{"localhost:5000/ns/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", v1.PullIfNotPresent},
		{"127.0.0.1:443/a/b/c", v1.PullAlways},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			if got := defaultPullPolicy(tc.image); got != tc.want {
				t.Errorf("defaultPullPolicy(%q) = %s, want %s", tc.image, got, tc.want)
			}
		})
	}
}

func TestPodUID(t *testing.T) {
	uid := func(t *testing.T, file, data, node string) string {
		t.Helper()
		pods, errs := ParseManifests(file, []byte(data), node)
		if len(errs) > 0 || len(pods) != 1 {
			t.Fatalf("ParseManifests(%s): pods %d, errors %v", file, len(pods), errs)
		}
		return string(pods[0].UID)
	}
	base := uid(t, "web.yaml", podYAML("web"), testNode)

	t.Run("same content gives the same UID on every call", func(t *testing.T) {
		if got := uid(t, "web.yaml", podYAML("web"), testNode); got != base {
			t.Errorf("UID changed between calls: %s then %s", base, got)
		}
	})
	t.Run("file name and document position are not part of it", func(t *testing.T) {
		if got := uid(t, "renamed.yml", podYAML("web"), testNode); got != base {
			t.Errorf("UID changed with the file name: %s then %s", base, got)
		}
		multi := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n" + podYAML("web")
		if got := uid(t, "multi.yaml", multi, testNode); got != base {
			t.Errorf("UID changed with the document index: %s then %s", base, got)
		}
	})
	t.Run("comments, layout and JSON versus YAML are not part of it", func(t *testing.T) {
		commented := "# the web pod\n" + strings.Replace(podYAML("web"), "image: busybox:1.36", "image: \"busybox:1.36\"   # pinned", 1)
		if got := uid(t, "web.yaml", commented, testNode); got != base {
			t.Errorf("UID changed with comments and quoting: %s then %s", base, got)
		}
		asJSON := `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web"},"spec":{"containers":[{"image":"busybox:1.36","name":"app"}]}}`
		if got := uid(t, "web.json", asJSON, testNode); got != base {
			t.Errorf("UID differs between YAML and JSON of the same pod: %s then %s", base, got)
		}
	})
	t.Run("a manifest uid is ignored", func(t *testing.T) {
		withUID := strings.Replace(podYAML("web"), "  name: web\n", "  name: web\n  uid: abc\n", 1)
		if got := uid(t, "web.yaml", withUID, testNode); got != base {
			t.Errorf("UID changed with metadata.uid: %s then %s", base, got)
		}
	})
	t.Run("an edit gives a new UID", func(t *testing.T) {
		edited := strings.Replace(podYAML("web"), "busybox:1.36", "busybox:1.37", 1)
		if got := uid(t, "web.yaml", edited, testNode); got == base {
			t.Errorf("UID did not change with the content: %s", got)
		}
	})
	t.Run("another node gives another UID", func(t *testing.T) {
		if got := uid(t, "web.yaml", podYAML("web"), "node-2"); got == base {
			t.Errorf("UID did not change with the node name: %s", got)
		}
	})
}

func TestParseManifestsReturnsFreshPods(t *testing.T) {
	a, _ := ParseManifests("web.yaml", []byte(podYAML("web")), testNode)
	b, _ := ParseManifests("web.yaml", []byte(podYAML("web")), testNode)
	a[0].Labels = map[string]string{"changed": "yes"}
	if b[0].Labels != nil {
		t.Error("pods of two calls share memory")
	}
}
