package prober

import (
	"net"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func tcpTarget(host string, port intstr.IntOrString) Target {
	return Target{
		PodUID: podUID, ContainerName: "app", ContainerID: "c1", PodIP: "127.0.0.1", Kind: Liveness,
		Ports: []v1.ContainerPort{{Name: "db", ContainerPort: port.IntVal}},
		Probe: &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Host: host, Port: port}}},
	}
}

func TestTCPProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	open := l.Addr().(*net.TCPAddr).Port
	h := newHarness(t, 0)

	for _, tc := range []struct {
		name    string
		target  Target
		want    Result
		message string
	}{
		{name: "open port at the pod IP", target: tcpTarget("", intstr.FromInt(open)), want: Success},
		{name: "named port", target: func() Target {
			tg := tcpTarget("", intstr.FromString("db"))
			tg.Ports[0].ContainerPort = int32(open)
			return tg
		}(), want: Success},
		{name: "given host", target: tcpTarget("localhost", intstr.FromInt(open)), want: Success},
		{name: "closed port", target: tcpTarget("", intstr.FromInt(closedPort(t))), want: Failure, message: "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := probeOnce(t, h, tc.target, time.Second)
			if out.result != tc.want || !strings.Contains(out.message, tc.message) {
				t.Fatalf("probe = %v %q, want %v %q", out.result, out.message, tc.want, tc.message)
			}
		})
	}
}
