package nodeapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	adminToken  = "admin-token"
	viewerToken = "viewer-token"
)

type testServer struct {
	*Server
	tokens  *fakeTokens
	access  *fakeAccess
	runtime *fakeRuntime
	clock   *clocktesting.FakeClock
	logsDir string
}

// newTestServer serves pod ns/web (container "app", restarted once: instance c1 then c2)
// on node n1. The admin may do anything; the viewer nothing.
func newTestServer(t *testing.T) *testServer {
	t.Helper()
	logs := t.TempDir()
	cur := filepath.Join(logs, "c2.log")
	prev := filepath.Join(logs, "c1.log")
	os.WriteFile(cur, []byte("2026-01-02T10:00:01Z stdout F current\n"), 0o644)
	os.WriteFile(prev, []byte("2026-01-02T10:00:00Z stderr F previous\n"), 0o644)
	ts := &testServer{
		tokens: &fakeTokens{users: map[string]authnv1.UserInfo{
			adminToken:  {Username: "admin", Groups: []string{"system:masters"}},
			viewerToken: {Username: "system:serviceaccount:ns:viewer", UID: "u1", Groups: []string{"system:serviceaccounts"}},
		}},
		access: &fakeAccess{allow: func(s authzv1.SubjectAccessReviewSpec) bool {
			return s.User == "admin" || s.User == "apiserver-client"
		}},
		runtime: &fakeRuntime{
			containers: map[string]*runtimeapi.ContainerStatus{
				"c2": {Id: "c2", State: runtimeapi.ContainerState_CONTAINER_EXITED, LogPath: cur},
				"c1": {Id: "c1", State: runtimeapi.ContainerState_CONTAINER_EXITED, LogPath: prev},
			},
			streamURL: "http://127.0.0.1:1/exec/token",
		},
		clock:   clocktesting.NewFakeClock(time.Date(2026, 1, 2, 10, 0, 30, 0, time.UTC)),
		logsDir: t.TempDir(),
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-1"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app"}, {Name: "idle"}}},
		Status: v1.PodStatus{ContainerStatuses: []v1.ContainerStatus{{
			Name: "app", ContainerID: "containerd://c2", RestartCount: 1,
			State:                v1.ContainerState{Running: &v1.ContainerStateRunning{}},
			LastTerminationState: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ContainerID: "containerd://c1"}},
		}, {
			Name: "idle", State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ImagePullBackOff"}},
		}}},
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s, err := New(Config{
		NodeName: "n1", Addr: "127.0.0.1:0", Log: logrus.NewEntry(log),
		Pods:       func() []*v1.Pod { return []*v1.Pod{pod} },
		Runtime:    ts.runtime,
		PodLogsDir: ts.logsDir,
		CertDir:    t.TempDir(),
		Tokens:     ts.tokens,
		Access:     ts.access,
		Clock:      ts.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	return ts
}

// do serves one request with the token (none if empty) and returns status and body.
func (ts *testServer) do(method, target, token string) (int, string) {
	r := httptest.NewRequest(method, target, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	ts.Handler().ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestRequestAttributesFollowTheKubeletsMapping(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		verb         string
		subs         string
	}{
		{"GET", "/containerLogs/ns/web/app", "get", "proxy"},
		{"POST", "/exec/ns/web/app", "create", "proxy"},
		{"GET", "/exec/ns/web/app", "get", "proxy"},
		{"POST", "/attach/ns/web/app", "create", "proxy"},
		{"POST", "/portForward/ns/web", "create", "proxy"},
		{"GET", "/pods", "get", "pods proxy"},
		{"GET", "/runningpods/", "get", "pods proxy"},
		{"GET", "/healthz", "get", "healthz proxy"},
		{"GET", "/configz", "get", "configz proxy"},
		{"GET", "/stats/summary", "get", "stats"},
		{"GET", "/metrics", "get", "metrics"},
		{"GET", "/metrics/cadvisor", "get", "metrics"},
		{"GET", "/logs/syslog", "get", "log"},
		{"GET", "/logsfoo", "get", "proxy"},
		{"POST", "/checkpoint/ns/web/app", "create", "checkpoint"},
		{"GET", "/statusz", "get", "statusz"},
		{"GET", "/flagz", "get", "configz"},
		{"PUT", "/x", "update", "proxy"},
		{"PATCH", "/x", "patch", "proxy"},
		{"DELETE", "/x", "delete", "proxy"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			attrs := requestAttributes(httptest.NewRequest(tc.method, tc.path, nil))
			var subs []string
			for _, a := range attrs {
				if a.Verb != tc.verb {
					t.Errorf("verb %q, want %q", a.Verb, tc.verb)
				}
				subs = append(subs, a.Subresource)
			}
			if strings.Join(subs, " ") != tc.subs {
				t.Errorf("subresources %v, want %s", subs, tc.subs)
			}
		})
	}
}

func TestNoCredentialsIs401(t *testing.T) {
	ts := newTestServer(t)
	for _, p := range []string{"/containerLogs/ns/web/app", "/pods", "/healthz", "/nothing"} {
		if code, body := ts.do("GET", p, ""); code != http.StatusUnauthorized || !strings.Contains(body, "Unauthorized") {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
	if code, _ := ts.do("GET", "/pods", "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d", code)
	}
	if len(ts.access.reviews) != 0 {
		t.Errorf("unauthenticated requests were authorized: %v", ts.access.reviews)
	}
}

func TestTokenWithoutRightsIs403NamingUserVerbAndSubresource(t *testing.T) {
	ts := newTestServer(t)
	code, body := ts.do("GET", "/containerLogs/ns/web/app", viewerToken)
	if code != http.StatusForbidden {
		t.Fatalf("%d %q", code, body)
	}
	if want := "Forbidden (user=system:serviceaccount:ns:viewer, verb=get, resource=nodes, subresource(s)=[proxy])"; !strings.Contains(body, want) {
		t.Errorf("body %q, want %q", body, want)
	}
	r := ts.access.reviews[0]
	want := authzv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "nodes", Subresource: "proxy", Name: "n1"}
	if *r.ResourceAttributes != want || r.User != "system:serviceaccount:ns:viewer" || r.UID != "u1" || r.Groups[0] != "system:serviceaccounts" {
		t.Errorf("review %+v %+v", r, r.ResourceAttributes)
	}
	// /pods asks for nodes/pods, then nodes/proxy, and names both.
	if code, body := ts.do("GET", "/pods", viewerToken); code != http.StatusForbidden || !strings.Contains(body, "subresource(s)=[pods proxy]") {
		t.Errorf("/pods: %d %q", code, body)
	}
}

func TestAuthorizedTokenReadsLogsAndReviewsAreCached(t *testing.T) {
	ts := newTestServer(t)
	for range 3 {
		if code, body := ts.do("GET", "/containerLogs/ns/web/app", adminToken); code != 200 || body != "current\n" {
			t.Fatalf("%d %q", code, body)
		}
	}
	if ts.tokens.calls != 1 || len(ts.access.reviews) != 1 {
		t.Fatalf("%d token reviews, %d access reviews for three requests; want one each", ts.tokens.calls, len(ts.access.reviews))
	}
	ts.clock.Step(2*time.Minute + time.Second) // authentication expires, authorization (5m) not
	ts.do("GET", "/containerLogs/ns/web/app", adminToken)
	if ts.tokens.calls != 2 || len(ts.access.reviews) != 1 {
		t.Fatalf("after 2m: %d token reviews, %d access reviews; want 2 and 1", ts.tokens.calls, len(ts.access.reviews))
	}
	// Denials last 30 s.
	ts.do("GET", "/containerLogs/ns/web/app", viewerToken)
	ts.do("GET", "/containerLogs/ns/web/app", viewerToken)
	if len(ts.access.reviews) != 2 {
		t.Fatalf("%d access reviews, want the denial cached", len(ts.access.reviews))
	}
	ts.clock.Step(31 * time.Second)
	ts.do("GET", "/containerLogs/ns/web/app", viewerToken)
	if len(ts.access.reviews) != 3 {
		t.Fatalf("%d access reviews, want the denial expired after 30s", len(ts.access.reviews))
	}
}

func TestReviewFailuresAreNotCached(t *testing.T) {
	ts := newTestServer(t)
	ts.tokens.err = errors.New("connection refused")
	if code, _ := ts.do("GET", "/pods", adminToken); code != http.StatusUnauthorized {
		t.Fatalf("TokenReview failing: %d, want 401", code)
	}
	ts.tokens.err = nil
	ts.access.err = errors.New("connection refused")
	if code, body := ts.do("GET", "/pods", adminToken); code != http.StatusInternalServerError || !strings.Contains(body, "Authorization error (user=admin") {
		t.Fatalf("SubjectAccessReview failing: %d %q, want 500", code, body)
	}
	ts.access.err = nil
	if code, body := ts.do("GET", "/pods", adminToken); code != 200 || !strings.Contains(body, `"kind":"PodList"`) || !strings.Contains(body, `"name":"web"`) {
		t.Fatalf("once the API server answers: %d %q", code, body)
	}
}

func TestClientCertificateSignedByTheClientCAAuthenticates(t *testing.T) {
	ca, caPEM := testCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(caFile, caPEM, 0o644)
	ts := newTestServer(t)
	cas, err := loadClientCAs(caFile)
	if err != nil {
		t.Fatal(err)
	}
	ts.authn.clientCAs = cas
	client := ca.client(t, "apiserver-client", "kubeadm:cluster-admins")
	other, _ := testCA(t)
	stranger := other.client(t, "apiserver-client")

	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want int
	}{
		{"signed by the CA", client, 200},
		{"signed by another CA", stranger, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/containerLogs/ns/web/app", nil)
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.cert}}
			w := httptest.NewRecorder()
			ts.Handler().ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%d %q, want %d", w.Code, w.Body.String(), tc.want)
			}
		})
	}
	r := ts.access.reviews[0]
	if r.User != "apiserver-client" || len(r.Groups) != 1 || r.Groups[0] != "kubeadm:cluster-admins" {
		t.Errorf("review of %q in %v", r.User, r.Groups)
	}
}

func TestBadPathsAndParametersAreRejected(t *testing.T) {
	ts := newTestServer(t)
	for _, tc := range []struct {
		path string
		want int
		msg  string
	}{
		{"/containerLogs/ns/../../etc/passwd", 400, "bad path"},
		{"/containerLogs/ns/web/..", 400, "bad path"},
		{"/containerLogs/ns/web/..%2F..%2Fetc%2Fpasswd", 400, "bad path"},
		{"/containerLogs/ns/web/%2e%2e", 400, "bad path"},
		{"/containerLogs/ns//app", 400, "empty segment"},
		{"/containerLogs/NS/web/app", 400, "namespace"},
		{"/containerLogs/ns/web/App_1", 400, "container name"},
		{"/containerLogs/ns/web%20x/app", 400, "pod name"},
		{"/containerLogs/ns/web/app?tailLines=-1", 400, "tailLines=-1 must be at least 0"},
		{"/containerLogs/ns/web/app?limitBytes=x", 400, "limitBytes"},
		{"/containerLogs/ns/web/nope", 404, `container "nope" is not in pod ns/web`},
		{"/containerLogs/ns/gone/app", 404, "pod ns/gone is not on node n1"},
		{"/containerLogs/ns/web/idle", 400, `container "idle" in pod ns/web is waiting to start: ImagePullBackOff`},
		// Valid, so handed to the proxy, which wants an upgrade (SPDY or WebSocket).
		{"/exec/ns/web/app?command=ls&output=1", 400, "Upgrade request required"},
		{"/exec/ns/web/app?stdout=1", 400, "no command"},
		{"/exec/ns/web/app?command=ls", 400, "at least 1 of stdin, stdout, stderr"},
		{"/exec/ns/web/../../app?command=ls&output=1", 400, "bad path"},
		{"/exec/ns/web/uid-2/app?command=ls&output=1", 404, "is not on node"},
		{"/exec/ns/web/idle?command=ls&output=1", 400, "is not running (waiting: ImagePullBackOff)"},
		{"/portForward/ns/web?port=70000", 400, "not a port number"},
		{"/portForward/ns/web", 400, "no ready sandbox"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			method := "GET"
			if !strings.HasPrefix(tc.path, "/containerLogs") {
				method = "POST"
			}
			code, body := ts.do(method, tc.path, adminToken)
			if code != tc.want || !strings.Contains(body, tc.msg) {
				t.Fatalf("%d %q, want %d with %q", code, body, tc.want, tc.msg)
			}
		})
	}
	if len(ts.runtime.execs) != 1 || strings.Join(ts.runtime.execs[0], " ") != "c2 ls" {
		t.Errorf("execs %v, want the one valid request in container c2", ts.runtime.execs)
	}
}

func TestPreviousLogsAreTheInstanceBeforeAndFallBackToThePodLogDir(t *testing.T) {
	ts := newTestServer(t)
	if code, body := ts.do("GET", "/containerLogs/ns/web/app?previous=true&timestamps=true", adminToken); code != 200 || body != "2026-01-02T10:00:00.000000000Z previous\n" {
		t.Fatalf("previous: %d %q", code, body)
	}
	// The runtime forgot c1: the kubelet's layout, <ns>_<name>_<uid>/<container>/<restart>.log.
	delete(ts.runtime.containers, "c1")
	dir := filepath.Join(ts.logsDir, "ns_web_uid-1", "app")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "0.log"), []byte("2026-01-02T10:00:00Z stdout F from the pod log dir\n"), 0o644)
	if code, body := ts.do("GET", "/containerLogs/ns/web/app?previous=1", adminToken); code != 200 || body != "from the pod log dir\n" {
		t.Fatalf("previous from the pod log dir: %d %q", code, body)
	}
	os.Remove(filepath.Join(dir, "0.log"))
	if code, body := ts.do("GET", "/containerLogs/ns/web/app?previous=1", adminToken); code != 404 || !strings.Contains(body, "does not exist") {
		t.Fatalf("no file: %d %q", code, body)
	}
}

func TestSelfSignedCertificateIsKeptAndReused(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("192.0.2.7")}
	first, err := servingCertificate("", "", dir, []string{"n1", "localhost"}, ips, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := first.Leaf
	for _, name := range []string{"n1", "localhost", "127.0.0.1", "192.0.2.7"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not name %s: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, selfSignedKeyName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}
	again, err := servingCertificate("", "", dir, []string{"n1", "localhost"}, ips, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Leaf.Equal(leaf) {
		t.Error("a second start generated a new certificate")
	}
	moved, err := servingCertificate("", "", dir, []string{"n1", "localhost"}, []net.IP{net.ParseIP("192.0.2.8")}, now)
	if err != nil {
		t.Fatal(err)
	}
	if moved.Leaf.Equal(leaf) || moved.Leaf.VerifyHostname("192.0.2.8") != nil {
		t.Error("a new node IP kept the old certificate")
	}
	expiring, err := servingCertificate("", "", dir, []string{"n1", "localhost"}, []net.IP{net.ParseIP("192.0.2.8")}, now.Add(selfSignedValidity-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if expiring.Leaf.Equal(moved.Leaf) {
		t.Error("a certificate about to expire was kept")
	}
}
