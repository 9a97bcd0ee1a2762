package prober

import (
	"context"
	"fmt"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// userAgent is sent by HTTP and gRPC probes unless the probe sets its own; applications
// match its "kube-probe/" prefix.
const userAgent = "kube-probe/nodeagent"

// maxMessage bounds what a probe keeps of command output or a response body (the kubelet's
// 10 KiB).
const maxMessage = 10 << 10

// outcome is what one run found.
type outcome struct {
	// result is Success or Failure; Unknown means the probe could not be run at all and the
	// run does not count.
	result Result
	// message says why on Failure; on Success it is a warning worth logging, or "".
	message string
}

// handler runs one probe's action once, within timeout. Built once per target, so each run
// only does the I/O.
type handler interface {
	probe(ctx context.Context, timeout time.Duration) outcome
}

// newHandler prepares the action of t.Probe, in the kubelet's order of precedence; nil if
// it has none. A target that can never be probed (a port name the container does not
// declare, no pod IP) gets a handler that fails every run with the reason.
func (m *Manager) newHandler(t *Target) handler {
	p := t.Probe
	switch {
	case p.Exec != nil:
		return &execProbe{exec: m.cfg.Exec, id: t.ContainerID, cmd: p.Exec.Command}
	case p.HTTPGet != nil:
		return m.newHTTPProbe(t, p.HTTPGet)
	case p.TCPSocket != nil:
		addr, err := address(t, p.TCPSocket.Host, p.TCPSocket.Port)
		if err != nil {
			return failing(err.Error())
		}
		return &tcpProbe{dialer: m.dialer, addr: addr}
	case p.GRPC != nil:
		// gRPC probes have no host: always the pod.
		addr, err := address(t, "", intstr.FromInt32(p.GRPC.Port))
		if err != nil {
			return failing(err.Error())
		}
		return m.newGRPCProbe(addr, p.GRPC.Service)
	}
	return nil
}

// address joins the probe's host (default the pod IP) and its resolved port.
func address(t *Target, host string, port intstr.IntOrString) (string, error) {
	n, err := ResolvePort(port, t.ContainerName, t.Ports)
	if err != nil {
		return "", err
	}
	if host == "" {
		host = t.PodIP
	}
	if host == "" {
		return "", fmt.Errorf("the pod has no IP to probe")
	}
	return joinHostPort(host, n), nil
}

// ResolvePort turns a port number or the name of one of the container's ports into a
// number. As the kubelet, a name that is no port's name is tried as a number. Lifecycle
// hooks resolve their httpGet ports with it too.
func ResolvePort(p intstr.IntOrString, container string, ports []v1.ContainerPort) (int, error) {
	port := int(p.IntVal)
	if p.Type == intstr.String {
		found := false
		for _, cp := range ports {
			if cp.Name == p.StrVal {
				port, found = int(cp.ContainerPort), true
				break
			}
		}
		if !found {
			n, err := strconv.Atoi(p.StrVal)
			if err != nil {
				return 0, fmt.Errorf("container %q has no port named %q", container, p.StrVal)
			}
			port = n
		}
	}
	if port <= 0 || port > 65535 {
		return 0, fmt.Errorf("invalid port number %d", port)
	}
	return port, nil
}

// failing is the handler of a target that cannot be probed: every run fails with the reason.
type failing string

func (f failing) probe(context.Context, time.Duration) outcome {
	return outcome{result: Failure, message: string(f)}
}
