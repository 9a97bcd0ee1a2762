//go:build unix

package prober

import (
	"net"
	"syscall"
)

// probeDialer sets SO_LINGER 1s on its connections, as the kubelet's probe dialer does to
// keep frequent probes from piling up closed sockets (1s rather than 0, so that a close
// still sends FIN, not RST).
func probeDialer() *net.Dialer {
	return &net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			// Best effort, as the kubelet: a socket without it still probes.
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 1})
			})
		},
	}
}
