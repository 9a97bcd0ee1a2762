package controlplane

import (
	"slices"
	"strings"
	"testing"
)

func TestProbeAndHookPortsMustBeValid(t *testing.T) {
	// Each case is the body of a container named app with ports http (8080) and metrics
	// (9090), in a pod v.yaml.
	tests := []struct {
		name string
		init bool   // a sidecar (restartable init container) rather than an app container
		body string // YAML lines under the container, indented by 4
		want []string
	}{
		{
			name: "liveness httpGet port over 65535",
			body: "    livenessProbe: {httpGet: {path: /, port: 70000}}\n",
			want: []string{"spec.containers[0].livenessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive"},
		},
		{
			name: "readiness tcpSocket port 0",
			body: "    readinessProbe: {tcpSocket: {port: 0}}\n",
			want: []string{"spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive"},
		},
		{
			name: "a missing port is port 0",
			body: "    readinessProbe: {tcpSocket: {}}\n",
			want: []string{"spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive"},
		},
		{
			name: "startup grpc port over 65535",
			body: "    startupProbe: {grpc: {port: 70000}}\n",
			want: []string{"spec.containers[0].startupProbe.grpc.port: Invalid value: 70000: must be between 1 and 65535, inclusive"},
		},
		{
			name: "negative port",
			body: "    livenessProbe: {tcpSocket: {port: -1}}\n",
			want: []string{"spec.containers[0].livenessProbe.tcpSocket.port: Invalid value: -1: must be between 1 and 65535, inclusive"},
		},
		{
			name: "postStart httpGet port 0",
			body: "    lifecycle: {postStart: {httpGet: {path: /, port: 0}}}\n",
			want: []string{"spec.containers[0].lifecycle.postStart.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"},
		},
		{
			name: "preStop tcpSocket port over 65535",
			body: "    lifecycle: {preStop: {tcpSocket: {port: 65536}}}\n",
			want: []string{"spec.containers[0].lifecycle.preStop.tcpSocket.port: Invalid value: 65536: must be between 1 and 65535, inclusive"},
		},
		{
			name: "sidecar liveness port over 65535",
			init: true,
			body: "    livenessProbe: {httpGet: {path: /, port: 70000}}\n",
			want: []string{"spec.initContainers[0].livenessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive"},
		},
		{
			name: "a port name must be an IANA_SVC_NAME",
			body: "    livenessProbe: {httpGet: {path: /, port: Http_1}}\n",
			want: []string{
				`spec.containers[0].livenessProbe.httpGet.port: Invalid value: "Http_1": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`,
			},
		},
		{
			// As the API server: a number must be written as a number.
			name: "a number as a string is not a port name",
			body: "    livenessProbe: {tcpSocket: {port: \"8080\"}}\n",
			want: []string{`spec.containers[0].livenessProbe.tcpSocket.port: Invalid value: "8080": must contain at least one letter (a-z)`},
		},
		{
			name: "a port name must be one of the container's ports",
			body: "    readinessProbe: {httpGet: {path: /, port: https}}\n",
			want: []string{`spec.containers[0].readinessProbe.httpGet.port: Invalid value: "https": must be the name of one of the container's ports`},
		},
		{
			name: "several at once",
			body: "    livenessProbe: {httpGet: {path: /, port: 0}}\n    readinessProbe: {tcpSocket: {port: 70000}}\n",
			want: []string{
				"spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
				"spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: 70000: must be between 1 and 65535, inclusive",
			},
		},
		{
			name: "good ports pass",
			body: "    livenessProbe: {httpGet: {path: /, port: http}}\n" +
				"    readinessProbe: {tcpSocket: {port: 1}}\n" +
				"    startupProbe: {grpc: {port: 65535}}\n" +
				"    lifecycle:\n      postStart: {httpGet: {path: /, port: metrics}}\n      preStop: {httpGet: {path: /, port: 8080}}\n",
		},
		{
			name: "exec probes have no port",
			body: "    livenessProbe: {exec: {command: [\"true\"]}}\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			container := "  - name: app\n    image: x\n    ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]\n" + tc.body
			doc := "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n"
			if tc.init {
				doc += "  initContainers:\n" + container + "    restartPolicy: Always\n  containers:\n  - {name: main, image: x}\n"
			} else {
				doc += "  containers:\n" + container
			}
			pods, errs := ParseManifests("v.yaml", []byte(doc), testNode)
			var want []string
			switch len(tc.want) {
			case 0:
			case 1:
				want = []string{"v.yaml: document 0: " + tc.want[0]}
			default: // several errors read as the API server joins them
				want = []string{"v.yaml: document 0: [" + strings.Join(tc.want, ", ") + "]"}
			}
			if got := errorStrings(errs); !slices.Equal(got, want) {
				t.Errorf("errors =\n  %q\nwant\n  %q", got, want)
			}
			if len(want) == 0 && len(pods) != 1 {
				t.Errorf("got %d pods, want the pod", len(pods))
			}
		})
	}
}
