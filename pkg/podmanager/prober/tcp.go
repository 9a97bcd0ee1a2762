package prober

import (
	"context"
	"net"
	"time"
)

// tcpProbe succeeds if a TCP connection can be opened; it is closed at once.
type tcpProbe struct {
	dialer *net.Dialer
	addr   string
}

func (p *tcpProbe) probe(ctx context.Context, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return outcome{result: Failure, message: err.Error()}
	}
	_ = conn.Close()
	return outcome{result: Success}
}
