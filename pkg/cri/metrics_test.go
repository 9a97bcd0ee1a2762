package cri

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestOperationTypeIsTheKubeletsSnakeCase(t *testing.T) {
	for method, want := range map[string]string{
		"/runtime.v1.RuntimeService/RunPodSandbox":    "run_podsandbox",
		"/runtime.v1.RuntimeService/StopPodSandbox":   "stop_podsandbox",
		"/runtime.v1.RuntimeService/PodSandboxStatus": "podsandbox_status",
		"/runtime.v1.RuntimeService/ListPodSandbox":   "list_podsandbox",
		"/runtime.v1.RuntimeService/CreateContainer":  "create_container",
		"/runtime.v1.RuntimeService/ListContainers":   "list_containers",
		"/runtime.v1.RuntimeService/ExecSync":         "exec_sync",
		"/runtime.v1.RuntimeService/Version":          "version",
		"/runtime.v1.ImageService/PullImage":          "pull_image",
		"/runtime.v1.ImageService/ImageFsInfo":        "image_fs_info",
		"ReopenContainerLog":                          "reopen_container_log",
	} {
		if got := OperationType(method); got != want {
			t.Errorf("OperationType(%q) = %q, want %q", method, got, want)
		}
	}
}

func TestEveryCRICallIsCountedAndTimedByOperation(t *testing.T) {
	path := testSocketPath(t)
	f := newFakeCRI()
	f.setErr("StartContainer", status.Error(codes.Unavailable, "containerd restarting"))
	serveFake(t, path, f)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, path, Options{Metrics: m})
	ctx := context.Background()
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"}}
	if _, err := c.RunPodSandbox(ctx, cfg, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateContainer(ctx, "sb", &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}}, cfg); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.StartContainer(ctx, "c1"); err == nil {
			t.Fatal("StartContainer succeeded, want the fake's error")
		}
	}

	want := `
# HELP kubelet_runtime_operations_errors_total Cumulative number of runtime operation errors by operation type.
# TYPE kubelet_runtime_operations_errors_total counter
kubelet_runtime_operations_errors_total{operation_type="start_container"} 2
# HELP kubelet_runtime_operations_total Cumulative number of runtime operations by operation type.
# TYPE kubelet_runtime_operations_total counter
kubelet_runtime_operations_total{operation_type="create_container"} 1
kubelet_runtime_operations_total{operation_type="run_podsandbox"} 1
kubelet_runtime_operations_total{operation_type="start_container"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kubelet_runtime_operations_total", "kubelet_runtime_operations_errors_total"); err != nil {
		t.Error(err)
	}
	// One histogram per operation, with every call observed.
	if n := testutil.CollectAndCount(m.duration); n != 3 {
		t.Errorf("%d duration series, want 3", n)
	}
	var sampleCount uint64
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "kubelet_runtime_operations_duration_seconds" {
			for _, s := range mf.GetMetric() {
				sampleCount += s.GetHistogram().GetSampleCount()
			}
		}
	}
	if sampleCount != 4 {
		t.Errorf("%d calls timed, want 4", sampleCount)
	}
}

func TestReEstablishedEventStreamIsCountedNotTheFirst(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, testSocketPath(t), Options{Metrics: m})
	r, err := c.newEventsRunner(EventsConfig{Mode: EventsCRI, Handler: func(ContainerEvent) {}})
	if err != nil {
		t.Fatal(err)
	}
	r.up() // the first stream
	if got := testutil.ToFloat64(m.reconnects); got != 0 {
		t.Fatalf("reconnects after the first stream = %v, want 0", got)
	}
	for range 2 {
		r.failed(errors.New("stream broke"))
		r.up()
	}
	if got := testutil.ToFloat64(m.reconnects); got != 2 {
		t.Fatalf("reconnects = %v, want 2", got)
	}
}
