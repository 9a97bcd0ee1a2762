package prober

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// testServer is an HTTP server on 127.0.0.1 that records what reached it.
type testServer struct {
	*httptest.Server
	port int

	mu   sync.Mutex
	reqs []*http.Request // guarded by mu
}

func newTestServer(t *testing.T, tls bool, mux *http.ServeMux) *testServer {
	t.Helper()
	s := &testServer{}
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	if tls {
		s.Server = httptest.NewTLSServer(record)
	} else {
		s.Server = httptest.NewServer(record)
	}
	t.Cleanup(s.Close)
	s.port = s.Listener.Addr().(*net.TCPAddr).Port
	return s
}

func (s *testServer) paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.reqs {
		out = append(out, r.URL.RequestURI())
	}
	return out
}

func (s *testServer) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[len(s.reqs)-1]
}

func respond(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

func redirect(to func() string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, to(), http.StatusFound)
	}
}

// httpTarget probes port of the pod at 127.0.0.1; edit tweaks the action.
func httpTarget(port intstr.IntOrString, edit func(*v1.HTTPGetAction)) Target {
	g := &v1.HTTPGetAction{Path: "/", Port: port}
	if edit != nil {
		edit(g)
	}
	return Target{
		PodUID: podUID, PodRef: "default/web", ContainerName: "app", ContainerID: "c1", PodIP: "127.0.0.1",
		Kind: Readiness, Probe: &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: g}},
	}
}

func probeOnce(t *testing.T, h *harness, target Target, timeout time.Duration) outcome {
	t.Helper()
	hd := h.m.newHandler(&target)
	if hd == nil {
		t.Fatal("no handler")
	}
	return hd.probe(context.Background(), timeout)
}

func TestHTTPStatusClasses(t *testing.T) {
	mux := http.NewServeMux()
	srv := newTestServer(t, false, mux)
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
		_, _ = w.Write([]byte("body of " + r.PathValue("code")))
	})
	h := newHarness(t, 0)
	for _, tc := range []struct {
		code    int
		want    Result
		message string
	}{
		{200, Success, ""},
		{204, Success, ""},
		{299, Success, ""},
		{304, Success, "Probe terminated redirects"}, // a 3xx not followed: success with a warning
		{399, Success, "body of 399"},
		{400, Failure, "HTTP probe failed with statuscode: 400"},
		{404, Failure, "HTTP probe failed with statuscode: 404"},
		{500, Failure, "HTTP probe failed with statuscode: 500"},
		{503, Failure, "HTTP probe failed with statuscode: 503"},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			out := probeOnce(t, h, httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) {
				g.Path = "/status/" + strconv.Itoa(tc.code)
			}), time.Second)
			if out.result != tc.want || !strings.Contains(out.message, tc.message) || (tc.message == "") != (out.message == "") {
				t.Fatalf("probe = %v %q, want %v %q", out.result, out.message, tc.want, tc.message)
			}
		})
	}
}

func TestHTTPRequestAsTheKubeletSendsIt(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", respond(200))
	srv := newTestServer(t, false, mux)
	h := newHarness(t, 0)

	out := probeOnce(t, h, httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) {
		g.Path = "/healthz?deep=1"
		g.HTTPHeaders = []v1.HTTPHeader{{Name: "host", Value: "app.example"}, {Name: "x-custom", Value: "a"}, {Name: "X-Custom", Value: "b"}}
	}), time.Second)
	if out.result != Success {
		t.Fatalf("probe = %v %q", out.result, out.message)
	}
	r := srv.last()
	for name, got := range map[string]string{
		"path":       r.URL.Path,
		"query":      r.URL.RawQuery,
		"Host":       r.Host,
		"X-Custom":   strings.Join(r.Header.Values("X-Custom"), ","),
		"User-Agent": r.Header.Get("User-Agent"),
		"Accept":     r.Header.Get("Accept"),
		"gzip":       r.Header.Get("Accept-Encoding"),
		"keep-alive": strconv.FormatBool(r.Close),
	} {
		want := map[string]string{
			"path": "/healthz", "query": "deep=1", "Host": "app.example", "X-Custom": "a,b",
			"User-Agent": userAgent, "Accept": "*/*", "gzip": "", "keep-alive": "true",
		}[name]
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if !strings.HasPrefix(userAgent, "kube-probe/") {
		t.Errorf("User-Agent %q does not say kube-probe/", userAgent)
	}

	// Given headers win; an empty Accept removes it.
	probeOnce(t, h, httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) {
		g.HTTPHeaders = []v1.HTTPHeader{{Name: "User-Agent", Value: "mine"}, {Name: "Accept", Value: ""}}
	}), time.Second)
	r = srv.last()
	if ua, accept := r.Header.Get("User-Agent"), r.Header.Values("Accept"); ua != "mine" || len(accept) != 0 {
		t.Errorf("User-Agent %q Accept %q, want the given agent and no Accept", ua, accept)
	}
	if r.Host != "127.0.0.1:"+strconv.Itoa(srv.port) {
		t.Errorf("Host %q, want the pod IP and port", r.Host)
	}
}

func TestHTTPPort(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", respond(200))
	srv := newTestServer(t, false, mux)
	h := newHarness(t, 0)
	ports := []v1.ContainerPort{{Name: "metrics", ContainerPort: 1}, {Name: "http", ContainerPort: int32(srv.port)}}
	for _, tc := range []struct {
		name    string
		port    intstr.IntOrString
		podIP   string
		want    Result
		message string
	}{
		{name: "by number", port: intstr.FromInt(srv.port), podIP: "127.0.0.1", want: Success},
		{name: "by name", port: intstr.FromString("http"), podIP: "127.0.0.1", want: Success},
		{name: "a number as a string", port: intstr.FromString(strconv.Itoa(srv.port)), podIP: "127.0.0.1", want: Success},
		{name: "unknown name", port: intstr.FromString("admin"), podIP: "127.0.0.1", want: Failure, message: `container "app" has no port named "admin"`},
		{name: "out of range", port: intstr.FromInt(70000), podIP: "127.0.0.1", want: Failure, message: "invalid port number 70000"},
		{name: "no pod IP", port: intstr.FromInt(srv.port), want: Failure, message: "the pod has no IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := httpTarget(tc.port, nil)
			target.Ports, target.PodIP = ports, tc.podIP
			out := probeOnce(t, h, target, time.Second)
			if out.result != tc.want || !strings.Contains(out.message, tc.message) {
				t.Fatalf("probe = %v %q, want %v %q", out.result, out.message, tc.want, tc.message)
			}
		})
	}
}

func TestHTTPRedirects(t *testing.T) {
	mux := http.NewServeMux()
	srv := newTestServer(t, false, mux)
	mux.Handle("/ok", respond(200))
	mux.Handle("/fail", respond(500))
	mux.Handle("/same", redirect(func() string { return "/ok" }))
	mux.Handle("/same-absolute", redirect(func() string { return "http://127.0.0.1:" + strconv.Itoa(srv.port) + "/ok" }))
	mux.Handle("/same-to-failure", redirect(func() string { return "/fail" }))
	mux.Handle("/loop", redirect(func() string { return "/loop" }))
	mux.Handle("/away", redirect(func() string { return "http://localhost:" + strconv.Itoa(srv.port) + "/ok" }))
	h := newHarness(t, 0)

	for _, tc := range []struct {
		path    string
		want    Result
		message string
		reached []string
	}{
		{path: "/same", want: Success, reached: []string{"/same", "/ok"}},
		{path: "/same-absolute", want: Success, reached: []string{"/same-absolute", "/ok"}},
		{path: "/same-to-failure", want: Failure, message: "statuscode: 500", reached: []string{"/same-to-failure", "/fail"}},
		{path: "/loop", want: Failure, message: "stopped after 10 redirects", reached: strings.Fields(strings.Repeat("/loop ", 10))}, // the request and 9 redirects, as Go and the kubelet count
		// Another host is not followed: success with a warning, as the kubelet.
		{path: "/away", want: Success, message: "Probe terminated redirects", reached: []string{"/away"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			srv.mu.Lock()
			srv.reqs = nil
			srv.mu.Unlock()
			out := probeOnce(t, h, httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) {
				g.Path = tc.path
				g.HTTPHeaders = []v1.HTTPHeader{{Name: "X-Probe", Value: "1"}}
			}), time.Second)
			if out.result != tc.want || !strings.Contains(out.message, tc.message) || (tc.message == "") != (out.message == "") {
				t.Fatalf("probe = %v %q, want %v %q", out.result, out.message, tc.want, tc.message)
			}
			if got := srv.paths(); strings.Join(got, " ") != strings.Join(tc.reached, " ") {
				t.Fatalf("requests %v, want %v", got, tc.reached)
			}
			if r := srv.last(); r.Header.Get("X-Probe") != "1" || !strings.HasPrefix(r.Header.Get("User-Agent"), "kube-probe/") {
				t.Fatalf("a followed redirect lost the probe's headers: %v", r.Header)
			}
			if r := srv.last(); len(tc.reached) > 1 && !strings.HasSuffix(r.Header.Get("Referer"), tc.reached[len(tc.reached)-2]) {
				t.Fatalf("Referer %q, want the previous URL", r.Header.Get("Referer"))
			}
		})
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv := newTestServer(t, false, mux)
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	h := newHarness(t, 0)
	start := time.Now()
	out := probeOnce(t, h, httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) { g.Path = "/slow" }), 100*time.Millisecond)
	if out.result != Failure || !strings.Contains(out.message, "deadline exceeded") {
		t.Fatalf("probe = %v %q, want a timeout failure", out.result, out.message)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a 100ms probe took %v", took)
	}
}

func TestHTTPSSkipsCertificateVerification(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", respond(200))
	srv := newTestServer(t, true, mux)
	h := newHarness(t, 0)
	out := probeOnce(t, h, httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) { g.Scheme = v1.URISchemeHTTPS }), time.Second)
	if out.result != Success {
		t.Fatalf("probe = %v %q", out.result, out.message)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	h := newHarness(t, 0)
	out := probeOnce(t, h, httpTarget(intstr.FromInt(closedPort(t)), nil), time.Second)
	if out.result != Failure || !strings.Contains(out.message, "refused") {
		t.Fatalf("probe = %v %q, want connection refused", out.result, out.message)
	}
}

// TestHTTPReadinessProbe runs an HTTP readiness probe through the manager.
func TestHTTPReadinessProbe(t *testing.T) {
	var mu sync.Mutex
	code := 200
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(code)
	})
	srv := newTestServer(t, false, mux)
	h := newHarness(t, 0)
	target := httpTarget(intstr.FromInt(srv.port), nil)
	target.Probe.FailureThreshold = 1
	target.StartedAt = h.clock.Now()
	h.m.SyncPod(podUID, []Target{target})
	if u := h.nextUpdate(); u.Result != Success {
		t.Fatalf("update %+v, want Success", u)
	}
	mu.Lock()
	code = 503
	mu.Unlock()
	h.waitTimers(1)
	h.step(10 * time.Second)
	if u := h.nextUpdate(); u.Result != Failure || u.Message != "HTTP probe failed with statuscode: 503" {
		t.Fatalf("update %+v, want Failure with the status", u)
	}
}

// closedPort returns a local port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

func TestHTTPInvalidHeaderFails(t *testing.T) {
	h := newHarness(t, 0)
	for _, hd := range []v1.HTTPHeader{{Name: "bad name", Value: "x"}, {Name: "X-Ok", Value: "a\r\nInjected: yes"}} {
		out := probeOnce(t, h, httpTarget(intstr.FromInt(closedPort(t)), func(g *v1.HTTPGetAction) {
			g.HTTPHeaders = []v1.HTTPHeader{hd}
		}), time.Second)
		if out.result != Failure || !strings.Contains(out.message, "invalid header field") {
			t.Errorf("header %q: probe = %v %q, want an invalid header failure", hd.Name, out.result, out.message)
		}
	}
}

// TestHTTPReadsABoundedResponse: a pod cannot keep a probe reading.
func TestHTTPReadsABoundedResponse(t *testing.T) {
	endless := func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	mux := http.NewServeMux()
	srv := newTestServer(t, false, mux)
	mux.HandleFunc("/ok", endless)
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://localhost:"+strconv.Itoa(srv.port)+"/")
		w.WriteHeader(http.StatusFound)
		endless(w, r)
	})
	// Endless headers need a raw listener: net/http would not send them.
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	go func() {
		for {
			c, err := raw.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n"))
				line := []byte("X-Filler: " + strings.Repeat("y", 1000) + "\r\n")
				for {
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
		}
	}()
	h := newHarness(t, 0)
	for _, tc := range []struct {
		name string
		port int
		path string
		want Result
	}{
		{"endless body", srv.port, "/ok", Success},
		{"endless body of a redirect elsewhere", srv.port, "/away", Success},
		{"endless headers", raw.Addr().(*net.TCPAddr).Port, "/", Failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out := probeOnce(t, h, httpTarget(intstr.FromInt(tc.port), func(g *v1.HTTPGetAction) { g.Path = tc.path }), 5*time.Second)
			if out.result != tc.want {
				t.Fatalf("probe = %v %.200q, want %v", out.result, out.message, tc.want)
			}
			if len(out.message) > maxMessage+200 {
				t.Fatalf("message of %d bytes", len(out.message))
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("the probe read for %v", took)
			}
		})
	}
}

func TestHTTPSRedirectToSameHostOverHTTP(t *testing.T) {
	plain := http.NewServeMux()
	plain.Handle("/ok", respond(200))
	srvPlain := newTestServer(t, false, plain)
	secure := http.NewServeMux()
	secure.Handle("/go", redirect(func() string { return "http://127.0.0.1:" + strconv.Itoa(srvPlain.port) + "/ok" }))
	srvTLS := newTestServer(t, true, secure)
	h := newHarness(t, 0)
	out := probeOnce(t, h, httpTarget(intstr.FromInt(srvTLS.port), func(g *v1.HTTPGetAction) {
		g.Scheme, g.Path = v1.URISchemeHTTPS, "/go"
	}), time.Second)
	if out.result != Success || out.message != "" {
		t.Fatalf("probe = %v %q, want success", out.result, out.message)
	}
	if r := srvPlain.last(); r.URL.Path != "/ok" || r.Header.Get("Referer") != "" {
		t.Fatalf("followed to %s with Referer %q; an https page is no referer of an http one", r.URL.Path, r.Header.Get("Referer"))
	}
}

func TestHTTPHostHeaderThroughRedirects(t *testing.T) {
	mux := http.NewServeMux()
	srv := newTestServer(t, false, mux)
	mux.Handle("/ok", respond(200))
	mux.Handle("/relative", redirect(func() string { return "/ok" }))
	mux.Handle("/absolute", redirect(func() string { return "http://127.0.0.1:" + strconv.Itoa(srv.port) + "/ok" }))
	h := newHarness(t, 0)
	for path, want := range map[string]string{
		"/relative": "app.example",                         // kept, as Go's client does
		"/absolute": "127.0.0.1:" + strconv.Itoa(srv.port), // the location's own host
	} {
		out := probeOnce(t, h, httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) {
			g.Path = path
			g.HTTPHeaders = []v1.HTTPHeader{{Name: "Host", Value: "app.example"}}
		}), time.Second)
		if out.result != Success {
			t.Fatalf("%s: probe = %v %q", path, out.result, out.message)
		}
		if r := srv.last(); r.URL.Path != "/ok" || r.Host != want {
			t.Errorf("%s: reached %s with Host %q, want /ok with %q", path, r.URL.Path, r.Host, want)
		}
	}
}

func TestRemovingAnHTTPProbeCancelsItsRequest(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv := newTestServer(t, false, mux)
	t.Cleanup(func() { close(release) })
	h := newHarness(t, 0)
	target := httpTarget(intstr.FromInt(srv.port), func(g *v1.HTTPGetAction) { g.Path = "/slow" })
	target.Probe.TimeoutSeconds = 60
	target.StartedAt = h.clock.Now()
	h.m.SyncPod(podUID, []Target{target})
	w := h.worker("c1", Readiness)
	select {
	case <-arrived:
	case <-time.After(wait):
		t.Fatal("the probe did not reach the server")
	}
	h.m.RemovePod(podUID)
	h.waitDone(w) // long before the 60s timeout
	h.noUpdate()
}
