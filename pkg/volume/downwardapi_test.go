package volume

import (
	"context"
	"io"
	"maps"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestDownwardAPIVolumeFields(t *testing.T) {
	env := newTestEnv(t)
	field := func(path, fp string) v1.DownwardAPIVolumeFile {
		return v1.DownwardAPIVolumeFile{Path: path, FieldRef: &v1.ObjectFieldSelector{FieldPath: fp}}
	}
	res := func(path, r, divisor string) v1.DownwardAPIVolumeFile {
		sel := &v1.ResourceFieldSelector{ContainerName: "app", Resource: r}
		if divisor != "" {
			sel.Divisor = resource.MustParse(divisor)
		}
		return v1.DownwardAPIVolumeFile{Path: path, ResourceFieldRef: sel}
	}
	pod := testPod(v1.Volume{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{
		DefaultMode: ptr[int32](0o444),
		Items: []v1.DownwardAPIVolumeFile{
			field("name", "metadata.name"),
			field("namespace", "metadata.namespace"),
			field("uid", "metadata.uid"),
			field("labels", "metadata.labels"),
			field("annotations", "metadata.annotations"),
			field("tier", "metadata.labels['tier']"),
			res("cpu_limit", "limits.cpu", "1m"),
			res("cpu_limit_cores", "limits.cpu", ""),
			res("mem_request_mi", "requests.memory", "1Mi"),
			res("mem_limit", "limits.memory", ""),
			{Path: "sub/name", Mode: ptr[int32](0o400), FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
		},
	}}})
	pod.Labels = map[string]string{"tier": "front", "app": "web"}
	pod.Annotations = map[string]string{"note": `say "hi"`}
	pod.Spec.Containers[0].Resources = v1.ResourceRequirements{
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m"), v1.ResourceMemory: resource.MustParse("256Mi")},
		Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")},
	}
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginDownwardAPI, "info")
	want := map[string]string{
		"name":            "web",
		"namespace":       "default",
		"uid":             "uid-1",
		"labels":          "app=\"web\"\ntier=\"front\"",
		"annotations":     `note="say \"hi\""`,
		"tier":            "front",
		"cpu_limit":       "1500",
		"cpu_limit_cores": "2",
		"mem_request_mi":  "64",
		"mem_limit":       "268435456",
		"sub/name":        "web",
	}
	if got := readVolume(t, dir); !maps.Equal(got, want) {
		t.Fatalf("files =\n%q\nwant\n%q", got, want)
	}
	if m := fileMode(t, dir+"/labels"); m != 0o444 {
		t.Errorf("labels mode = %#o, want 0444", m)
	}
	if m := fileMode(t, dir+"/sub/name"); m != 0o400 {
		t.Errorf("sub/name mode = %#o, want 0400", m)
	}

	// A label change reaches the volume on the next sync.
	pod.Labels["tier"] = "back"
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if got := readVolume(t, dir)["tier"]; got != "back" {
		t.Fatalf("tier after relabel = %q", got)
	}
}

func TestDownwardAPIVolumeErrors(t *testing.T) {
	tests := []struct {
		name    string
		item    v1.DownwardAPIVolumeFile
		wantErr string
	}{
		{"a field not allowed in volumes", v1.DownwardAPIVolumeFile{Path: "ip", FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}},
			`fieldRef "status.podIP" is not supported in a volume`},
		{"an unset limit", v1.DownwardAPIVolumeFile{Path: "cpu", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.cpu"}},
			`container "app" sets no cpu limit`},
		{"an unknown container", v1.DownwardAPIVolumeFile{Path: "cpu", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "nope", Resource: "requests.cpu"}},
			`pod has no container "nope"`},
		{"an escaping path", v1.DownwardAPIVolumeFile{Path: "../../etc/passwd", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			`invalid path "../../etc/passwd": must not contain '..'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			pod := testPod(v1.Volume{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{tc.item}}}})
			_, err := env.m.SetUp(context.Background(), pod)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `volume "info"`) {
				t.Fatalf("SetUp error = %v, want it to name the volume and contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestUnsetLimitsReadTheNodesAllocatable: as with the kubelet, a resourceFieldRef to a limit
// the container does not set gives the node's allocatable amount.
func TestUnsetLimitsReadTheNodesAllocatable(t *testing.T) {
	env := newTestEnv(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := New(Config{RootDir: env.root, Source: env.source, Mounter: env.mounter, Log: logrus.NewEntry(log),
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("3Gi")}})
	if err != nil {
		t.Fatal(err)
	}
	sel := func(path, r, divisor string) v1.DownwardAPIVolumeFile {
		return v1.DownwardAPIVolumeFile{Path: path, ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "app", Resource: r, Divisor: resource.MustParse(divisor)}}
	}
	pod := testPod(v1.Volume{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{
		sel("cpu_m", "limits.cpu", "1m"), sel("mem_mi", "limits.memory", "1Mi"), sel("req_cpu_m", "requests.cpu", "1m"),
	}}}})
	pod.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m")}
	if _, err := m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cpu_m": "2000", "mem_mi": "3072", "req_cpu_m": "250"}
	if got := readVolume(t, env.volDir(pod, pluginDownwardAPI, "info")); !maps.Equal(got, want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
}
