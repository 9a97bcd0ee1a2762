package podmanager

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestHTTPHookFollowsSameHostRedirectsOnly(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path+"|"+r.Header.Get("X-Hook"))
		switch r.URL.Path {
		case "/start":
			http.Redirect(w, r, "/done", http.StatusFound)
		case "/away":
			http.Redirect(w, r, "http://other.invalid/x", http.StatusFound)
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	h := newHarness(t)
	w := newWorker(h.m, "uid")
	w.podIPs = []string{u.Hostname()}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	c := &v1.Container{Name: "app", Ports: []v1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	hook := func(path string) *v1.LifecycleHandler {
		return &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Path: path, Port: intstr.FromString("http"),
			HTTPHeaders: []v1.HTTPHeader{{Name: "X-Hook", Value: "yes"}}}}
	}
	if err := w.runHook(t.Context(), c, "id", hook("/start")); err != nil {
		t.Fatalf("same-host redirect: %v", err)
	}
	if strings.Join(paths, ",") != "/start|yes,/done|yes" {
		t.Fatalf("requests = %v", paths)
	}
	if err := w.runHook(t.Context(), c, "id", hook("/away")); err != nil {
		t.Fatalf("a redirect to another host is the answer, not an error: %v", err)
	}
	if err := w.runHook(t.Context(), c, "id", hook("/fail")); err == nil || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("failing hook: %v", err)
	}
	bad := &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Path: "/", Port: intstr.FromString("nope")}}
	if err := w.runHook(t.Context(), c, "id", bad); err == nil || !strings.Contains(err.Error(), `no port named "nope"`) {
		t.Fatalf("unknown port: %v", err)
	}
}
