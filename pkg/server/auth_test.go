package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
)

func TestNonLoopbackAddressNeedsAToken(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	pods := func() []*v1.Pod { return nil }
	cases := []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:10248", "", true},
		{"[::1]:10248", "", true},
		{"localhost:10248", "", true},
		{"0.0.0.0:10248", "", false},
		{":10248", "", false},
		{"192.0.2.10:10248", "", false},
		{"192.0.2.10:10248", "s3cret", true},
		{":10248", "s3cret", true},
	}
	for _, tc := range cases {
		_, err := New(Config{Addr: tc.addr, Log: log, Pods: pods, Token: tc.token})
		if tc.ok != (err == nil) {
			t.Errorf("New(%q, token %q) = %v, want ok %v", tc.addr, tc.token, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--debug-token-file") {
			t.Errorf("error %q does not say how to fix it", err)
		}
	}
}

func TestTokenIsRequiredOnEveryEndpoint(t *testing.T) {
	ts := newTestServer(t, Config{Token: "s3cret", PodDebug: func(string) (any, bool) { return nil, false }})
	for _, path := range []string{"/healthz", "/readyz", "/pods", "/debug/pprof/", "/debug/pods/u1", "/nothing-here"} {
		for _, tc := range []struct {
			header string
			want   int
		}{
			{"", http.StatusUnauthorized},
			{"Bearer wrong", http.StatusUnauthorized},
			{"Bearer s3cret-and-more", http.StatusUnauthorized},
			{"Basic s3cret", http.StatusUnauthorized},
			{"s3cret", http.StatusUnauthorized},
			{"Bearer s3cret", 0}, // whatever the endpoint answers, not 401
		} {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case tc.want == 0 && resp.StatusCode == http.StatusUnauthorized:
				t.Errorf("%s with the token: 401", path)
			case tc.want != 0 && resp.StatusCode != tc.want:
				t.Errorf("%s with %q: %d, want %d", path, tc.header, resp.StatusCode, tc.want)
			case tc.want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer"):
				t.Errorf("%s: 401 without a WWW-Authenticate challenge", path)
			}
		}
	}
}

func TestLoopbackWithoutTokenNeedsNone(t *testing.T) {
	ts := newTestServer(t, Config{})
	if code, _ := get(t, ts.URL+"/healthz"); code != 200 {
		t.Fatalf("/healthz without a token on loopback: %d", code)
	}
}

func TestServeAppliesTheTokenToo(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	s, err := New(Config{Addr: "127.0.0.1:0", Log: logrus.NewEntry(log), Pods: func() []*v1.Pod { return nil }, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/pods", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("Handler without the token: %d", rec.Code)
	}
}
