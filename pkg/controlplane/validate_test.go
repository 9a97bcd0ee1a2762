package controlplane

import (
	"strings"
	"testing"
)

func TestValidationErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		doc  string // a Pod document
		want string // the error after "v.yaml: document 0: "
	}{
		{
			name: "name required",
			doc:  "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: app, image: x}]}\n",
			want: "metadata.name: Required value",
		},
		{
			name: "name must be a DNS-1123 subdomain",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\nspec: {containers: [{name: app, image: x}]}\n",
			want: `metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
		},
		{
			name: "name too long once the node suffix is added",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: " + strings.Repeat("a", 250) + "}\nspec: {containers: [{name: app, image: x}]}\n",
			want: `metadata.name: Invalid value: "` + strings.Repeat("a", 250) + `": with the node name appended ("` + strings.Repeat("a", 250) + `-node-1"): must be no more than 253 characters`,
		},
		{
			name: "namespace must be a DNS-1123 label",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: kube.system}\nspec: {containers: [{name: app, image: x}]}\n",
			want: `metadata.namespace: Invalid value: "kube.system": must not contain dots`,
		},
		{
			name: "containers required",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {}\n",
			want: "spec.containers: Required value: must have at least one container",
		},
		{
			name: "container names unique across init containers",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {initContainers: [{name: app, image: x}], containers: [{name: app, image: x}]}\n",
			want: `spec.containers[0].name: Duplicate value: "app"`,
		},
		{
			name: "container name must be a DNS-1123 label",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: App, image: x}]}\n",
			want: `spec.containers[0].name: Invalid value: "App": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
		},
		{
			name: "image required",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: ' '}]}\n",
			want: "spec.containers[0].image: Required value",
		},
		{
			name: "port out of range",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, ports: [{containerPort: 70000}]}]}\n",
			want: "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
		},
		{
			name: "hostPort out of range",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, ports: [{containerPort: 80, hostPort: -1}]}]}\n",
			want: "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
		},
		{
			name: "protocol",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, ports: [{containerPort: 80, protocol: tcp}]}]}\n",
			want: `spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: "TCP", "UDP", "SCTP"`,
		},
		{
			name: "restartPolicy",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {restartPolicy: Sometimes, containers: [{name: app, image: x}]}\n",
			want: `spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`,
		},
		{
			name: "imagePullPolicy",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, imagePullPolicy: Maybe}]}\n",
			want: `spec.containers[0].imagePullPolicy: Unsupported value: "Maybe": supported values: "Always", "IfNotPresent", "Never"`,
		},
		{
			name: "dnsPolicy",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {dnsPolicy: Google, containers: [{name: app, image: x}]}\n",
			want: `spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"`,
		},
		{
			name: "terminationGracePeriodSeconds",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {terminationGracePeriodSeconds: -5, containers: [{name: app, image: x}]}\n",
			want: "spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0",
		},
		{
			name: "volume names unique",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {volumes: [{name: data}, {name: data}], containers: [{name: app, image: x}]}\n",
			want: `spec.volumes[1].name: Duplicate value: "data"`,
		},
		{
			name: "volumeMount must refer to a volume",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {volumes: [{name: data}], containers: [{name: app, image: x, volumeMounts: [{name: date, mountPath: /data}]}]}\n",
			want: `spec.containers[0].volumeMounts[0].name: Not found: "date"`,
		},
		{
			name: "env var name",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, env: [{name: 'A=B', value: x}]}]}\n",
			want: `spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='`,
		},
		{
			name: "negative quantity",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, resources: {requests: {memory: -1Gi}}}]}\n",
			want: `spec.containers[0].resources.requests[memory]: Invalid value: "-1Gi": must be greater than or equal to 0`,
		},
		{
			name: "request above limit",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, resources: {requests: {cpu: '2'}, limits: {cpu: '1'}}}]}\n",
			want: `spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1`,
		},
		{
			name: "restartPolicy on an app container",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: x, restartPolicy: Always}]}\n",
			want: "spec.containers[0].restartPolicy: Forbidden: may only be set on init containers",
		},
		{
			name: "several errors at once",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {restartPolicy: Sometimes, containers: [{name: app}]}\n",
			want: `[spec.containers[0].image: Required value, spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"]`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pods, errs := ParseManifests("v.yaml", []byte(tc.doc), testNode)
			if len(pods) != 0 {
				t.Errorf("got pod %s, want none", pods[0].Name)
			}
			want := "v.yaml: document 0: " + tc.want
			if len(errs) != 1 || errs[0].Error() != want {
				t.Errorf("errors = %q\nwant    [%q]", errorStrings(errs), want)
			}
		})
	}
}

func TestValidPodsPass(t *testing.T) {
	doc := `apiVersion: v1
kind: Pod
metadata:
  name: full
  namespace: kube-system
  labels: {app: full}
spec:
  hostNetwork: true
  restartPolicy: OnFailure
  dnsPolicy: ClusterFirstWithHostNet
  volumes:
  - name: config
    hostPath: {path: /etc/full, type: Directory}
  - name: cache
    emptyDir: {medium: Memory, sizeLimit: 64Mi}
  initContainers:
  - name: sidecar
    image: localhost:5000/proxy@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    restartPolicy: Always
  containers:
  - name: app
    image: localhost:5000/full:2.1
    env:
    - {name: MODE, value: edge}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 53, protocol: UDP}
    volumeMounts:
    - {name: config, mountPath: /etc/full, readOnly: true}
    - {name: cache, mountPath: /cache, subPath: app}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: "1", memory: 128Mi}
`
	pods, errs := ParseManifests("full.yaml", []byte(doc), testNode)
	if len(errs) > 0 || len(pods) != 1 {
		t.Fatalf("ParseManifests: pods %d, errors %q", len(pods), errorStrings(errs))
	}
	if got := pods[0].Spec.Containers[0].Ports[0].HostPort; got != 8080 {
		t.Errorf("hostNetwork pod: hostPort = %d, want it defaulted to the containerPort 8080", got)
	}
}
