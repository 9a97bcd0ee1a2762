package prober

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
)

// grpcServer serves on 127.0.0.1; with health, the standard health service.
func grpcServer(t *testing.T, hs *health.Server) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	if hs != nil {
		healthpb.RegisterHealthServer(s, hs)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return l.Addr().(*net.TCPAddr).Port
}

func grpcTarget(port int, service *string) Target {
	return Target{
		PodUID: podUID, ContainerName: "app", ContainerID: "c1", PodIP: "127.0.0.1", Kind: Readiness,
		Probe: &v1.Probe{ProbeHandler: v1.ProbeHandler{GRPC: &v1.GRPCAction{Port: int32(port), Service: service}}},
	}
}

func TestGRPCProbe(t *testing.T) {
	hs := health.NewServer() // "" is SERVING from the start
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	withHealth := grpcServer(t, hs)
	without := grpcServer(t, nil)
	h := newHarness(t, 0)
	str := func(s string) *string { return &s }

	for _, tc := range []struct {
		name    string
		target  Target
		want    Result
		message string
	}{
		{name: "default service SERVING", target: grpcTarget(withHealth, nil), want: Success},
		{name: "empty service SERVING", target: grpcTarget(withHealth, str("")), want: Success},
		{name: "NOT_SERVING", target: grpcTarget(withHealth, str("db")), want: Failure, message: `service unhealthy (responded with "NOT_SERVING")`},
		{name: "unknown service", target: grpcTarget(withHealth, str("nope")), want: Failure, message: "NotFound"},
		{name: "no health service", target: grpcTarget(without, nil), want: Failure, message: "does not implement the grpc health protocol"},
		{name: "closed port", target: grpcTarget(closedPort(t), nil), want: Failure, message: "failed to connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := probeOnce(t, h, tc.target, 2*time.Second)
			if out.result != tc.want || !strings.Contains(out.message, tc.message) {
				t.Fatalf("probe = %v %q, want %v %q", out.result, out.message, tc.want, tc.message)
			}
		})
	}
}

func TestGRPCTimeout(t *testing.T) {
	// A listener that accepts but never speaks HTTP/2.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	h := newHarness(t, 0)
	out := probeOnce(t, h, grpcTarget(l.Addr().(*net.TCPAddr).Port, nil), 200*time.Millisecond)
	if out.result != Failure || !strings.Contains(out.message, "timeout") {
		t.Fatalf("probe = %v %q, want a timeout failure", out.result, out.message)
	}
}
