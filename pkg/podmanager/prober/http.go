package prober

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// maxRedirects is how many requests a probe makes following same-host redirects, as the
// kubelet (Go's http.Client default).
const maxRedirects = 10

// maxResponse bounds what a run reads of one response (headers and the part of the body
// kept for a message), so that a pod cannot make the agent read without end.
const maxResponse = 256 << 10

// httpProbe GETs a URL: 2xx is success, 3xx success with a warning, anything else failure.
//
// It speaks HTTP/1.1 itself, with net/http's request writer and response parser, instead of
// going through an http.Transport: each run makes one connection (no keep-alives, as the
// kubelet) from the probe's own goroutine and closes it, so a run costs the connection and
// not the transport's two goroutines per connection and their wake-ups. Redirects are
// followed as the kubelet's http.Client does (see follow).
type httpProbe struct {
	m      *Manager
	header http.Header // as the spec says, with User-Agent and Accept added; read only
	host   string      // the Host header the spec sets, or ""
	first  hop         // the request of the spec, prepared once
}

// hop is one request of a run: the first, or one redirect.
type hop struct {
	url  *url.URL
	addr string         // host:port to dial
	ip   netip.AddrPort // addr when it is an IP address: dialled without the resolver
	tls  *tls.Config    // for https, with the server name; nil for http
	wire []byte         // the request as written on the connection
}

// newHTTPProbe builds the request as the kubelet does: scheme default http, host default
// the pod IP, path parsed for its query, headers as given (a Host header sets the request's
// Host), User-Agent and Accept added unless given (an empty Accept removes it).
func (m *Manager) newHTTPProbe(t *Target, g *v1.HTTPGetAction) handler {
	addr, err := address(t, g.Host, g.Port)
	if err != nil {
		return failing(err.Error())
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u, err := url.Parse(g.Path)
	if err != nil {
		u = &url.URL{Path: g.Path} // too late to reject it: send it as it is
	}
	u.Scheme, u.Host = scheme, addr
	header := make(http.Header, len(g.HTTPHeaders)+2)
	for _, h := range g.HTTPHeaders {
		if !validHeader(h.Name, h.Value) {
			return failing(fmt.Sprintf("Get %q: net/http: invalid header field %q", u, h.Name))
		}
		header.Add(h.Name, h.Value)
	}
	if _, ok := header["User-Agent"]; !ok {
		header.Set("User-Agent", userAgent)
	}
	if _, ok := header["Accept"]; !ok {
		header.Set("Accept", "*/*")
	} else if header.Get("Accept") == "" {
		header.Del("Accept")
	}
	p := &httpProbe{m: m, header: header, host: header.Get("Host")}
	first, err := p.newHop(u, p.host, "")
	if err != nil {
		return failing(fmt.Sprintf("Get %q: %v", u, err))
	}
	p.first = *first
	return p
}

// newHop prepares a request for u with the probe's headers.
func (p *httpProbe) newHop(u *url.URL, host, referer string) (*hop, error) {
	h := &hop{url: u}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
		h.tls = p.m.tlsConfig.Clone()
		h.tls.ServerName = u.Hostname()
	default:
		return nil, fmt.Errorf("unsupported protocol scheme %q", u.Scheme)
	}
	h.addr = net.JoinHostPort(u.Hostname(), port)
	h.ip, _ = netip.ParseAddrPort(h.addr)
	header := p.header
	if referer != "" {
		header = header.Clone()
		header.Set("Referer", referer)
	}
	req := &http.Request{
		Method: http.MethodGet, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Host: host, Close: true, // Connection: close, as a transport without keep-alives
	}
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return nil, err
	}
	h.wire = buf.Bytes()
	return h, nil
}

func (p *httpProbe) probe(ctx context.Context, timeout time.Duration) outcome {
	deadline := time.Now().Add(timeout)
	h := &p.first
	for n := 1; ; n++ {
		out, next := p.get(ctx, h, deadline, n)
		if next == nil {
			return out
		}
		h = next
	}
}

// get makes request n of a run (n-1 redirects followed so far) and returns its outcome, or
// the redirect to follow.
func (p *httpProbe) get(ctx context.Context, h *hop, deadline time.Time, n int) (outcome, *hop) {
	conn, err := p.dial(ctx, h, deadline)
	if err != nil {
		return p.failed(h, err), nil
	}
	// The probe's goroutine is the only one here: cancelling the probe unblocks it by
	// expiring the connection's deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer conn.Close()
	limited := &io.LimitedReader{R: conn, N: maxResponse}
	br := p.m.readers.Get().(*bufio.Reader)
	br.Reset(limited)
	defer func() {
		br.Reset(nil)
		p.m.readers.Put(br)
	}()

	if _, err := conn.Write(h.wire); err != nil {
		return p.failed(h, err), nil
	}
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, nil) // skip 1xx, as the transport does
	}
	if err != nil {
		return p.failed(h, err), nil
	}
	// resp.Body is not closed: closing it would read the rest of a body that does not end
	// with the connection. Closing the connection is enough.

	code := resp.StatusCode
	if loc := resp.Header.Get("Location"); loc != "" && isRedirect(code) {
		next, err := p.follow(h, loc, n)
		if err != nil {
			return outcome{result: Failure, message: err.Error()}, nil
		}
		if next != nil {
			return outcome{}, next
		}
	}
	switch {
	case code >= 200 && code < 300:
		return outcome{result: Success}, nil
	case code >= 300 && code < 400:
		// A redirect not followed (to another host) or not followable: the kubelet calls it
		// a success with a warning.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxMessage))
		return outcome{result: Success, message: fmt.Sprintf("Probe terminated redirects (HTTP %d to %q), Response body: %s",
			code, resp.Header.Get("Location"), strings.ToValidUTF8(string(body), ""))}, nil
	}
	return outcome{result: Failure, message: "HTTP probe failed with statuscode: " + strconv.Itoa(code)}, nil
}

// follow decides on a redirect as the kubelet's http.Client: another host is not followed
// (nil, nil: the redirect is the answer); the same host is, with the probe's headers, a
// Referer, and the spec's Host header if the location is relative; the 10th redirect in a
// row is an error.
func (p *httpProbe) follow(h *hop, loc string, n int) (*hop, error) {
	u, err := h.url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("Get %q: failed to parse Location header %q: %v", h.url, loc, err)
	}
	if u.Hostname() != p.first.url.Hostname() {
		return nil, nil
	}
	if n >= maxRedirects {
		return nil, fmt.Errorf("Get %q: stopped after %d redirects", u, maxRedirects)
	}
	host := ""
	if p.host != "" && p.host != p.first.url.Host {
		if rel, _ := url.Parse(loc); rel != nil && !rel.IsAbs() {
			host = p.host
		}
	}
	referer := ""
	if !(h.url.Scheme == "https" && u.Scheme == "http") {
		ref := *h.url
		ref.User = nil
		referer = ref.String()
	}
	next, err := p.newHop(u, host, referer)
	if err != nil {
		return nil, fmt.Errorf("Get %q: %v", u, err)
	}
	return next, nil
}

func (p *httpProbe) dial(ctx context.Context, h *hop, deadline time.Time) (net.Conn, error) {
	d := *p.m.dialer
	d.Deadline = deadline
	var conn net.Conn
	var err error
	if h.ip.IsValid() {
		conn, err = d.DialTCP(ctx, "tcp", netip.AddrPort{}, h.ip)
	} else {
		conn, err = d.DialContext(ctx, "tcp", h.addr)
	}
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(deadline); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if h.tls != nil {
		tc := tls.Client(conn, h.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		conn = tc
	}
	return conn, nil
}

// failed words a transport error as the kubelet's http.Client would.
func (p *httpProbe) failed(h *hop, err error) outcome {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return outcome{result: Failure, message: fmt.Sprintf("Get %q: context deadline exceeded (Client.Timeout exceeded while awaiting headers)", h.url)}
	}
	return outcome{result: Failure, message: fmt.Sprintf("Get %q: %v", h.url, err)}
}

// validHeader reports whether a header can be written as given, as the transport checks:
// the name a token, the value without control characters other than tab.
func validHeader(name, value string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// isRedirect is the statuses Go's http.Client follows for a GET.
func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
