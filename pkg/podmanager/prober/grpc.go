package prober

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// grpcProbe calls grpc.health.v1.Health/Check over a plaintext connection made for the run:
// SERVING is success.
type grpcProbe struct {
	addr   string
	target string // addr for the passthrough resolver: no DNS, no proxy
	opts   []grpc.DialOption
	req    *healthpb.HealthCheckRequest // sent as is by every run
}

func grpcDialOptions(dialer *net.Dialer) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), // the kubelet supports no TLS here either
		grpc.WithUserAgent(userAgent),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}),
		grpc.WithNoProxy(),
		grpc.WithDisableServiceConfig(),
		grpc.WithDisableRetry(),
	}
}

func (m *Manager) newGRPCProbe(addr string, service *string) handler {
	req := &healthpb.HealthCheckRequest{}
	if service != nil {
		req.Service = *service
	}
	return &grpcProbe{addr: addr, target: "passthrough:///" + addr, opts: m.grpcOpts, req: req}
}

func (p *grpcProbe) probe(ctx context.Context, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(p.target, p.opts...)
	if err != nil {
		return outcome{result: Failure, message: fmt.Sprintf("error: failed to connect service at %q: %v", p.addr, err)}
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, p.req)
	if err != nil {
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unimplemented:
			return outcome{result: Failure, message: "this server does not implement the grpc health protocol (grpc.health.v1.Health): " + st.Message()}
		case codes.DeadlineExceeded:
			return outcome{result: Failure, message: fmt.Sprintf("timeout: health rpc did not complete within %s", timeout)}
		case codes.Unavailable:
			return outcome{result: Failure, message: fmt.Sprintf("error: failed to connect service at %q: %s", p.addr, st.Message())}
		}
		return outcome{result: Failure, message: fmt.Sprintf("error: health rpc probe failed: %s: %s", st.Code(), st.Message())}
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return outcome{result: Failure, message: fmt.Sprintf("service unhealthy (responded with %q)", s.String())}
	}
	return outcome{result: Success}
}
