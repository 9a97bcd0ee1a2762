package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newTestServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg.Addr, cfg.Log = "127.0.0.1:0", logrus.NewEntry(log)
	if cfg.Pods == nil {
		cfg.Pods = func() []*v1.Pod { return nil }
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthzNamesTheFailingCheck(t *testing.T) {
	healthy := true
	ts := newTestServer(t, Config{Health: map[string]Check{
		"runtime": func(context.Context) error {
			if healthy {
				return nil
			}
			return errors.New("unix:///run/x.sock not reachable")
		},
		"sync-loop": func(context.Context) error { return nil },
	}})
	if code, body := get(t, ts.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthy: %d %q", code, body)
	}
	healthy = false
	code, body := get(t, ts.URL+"/healthz")
	if code != 500 || !strings.Contains(body, "runtime: unix:///run/x.sock not reachable") || strings.Contains(body, "sync-loop") {
		t.Fatalf("unhealthy: %d %q", code, body)
	}
}

func TestReadyzFollowsReadyFunc(t *testing.T) {
	ready := errors.New("waiting for the first sync")
	ts := newTestServer(t, Config{Ready: func() error { return ready }})
	if code, body := get(t, ts.URL+"/readyz"); code != 503 || !strings.Contains(body, "first sync") {
		t.Fatalf("not ready: %d %q", code, body)
	}
	ready = nil
	if code, _ := get(t, ts.URL+"/readyz"); code != 200 {
		t.Fatalf("ready: %d", code)
	}
}

func TestPodsReturnsAPodListWithStatus(t *testing.T) {
	ts := newTestServer(t, Config{Pods: func() []*v1.Pod {
		return []*v1.Pod{{
			ObjectMeta: metav1.ObjectMeta{Name: "web-node1", Namespace: "default"},
			Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.88.0.5"},
		}}
	}})
	code, body := get(t, ts.URL+"/pods")
	if code != 200 {
		t.Fatalf("code %d", code)
	}
	var list v1.PodList
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "PodList" || len(list.Items) != 1 || list.Items[0].Status.PodIP != "10.88.0.5" || list.Items[0].Kind != "Pod" {
		t.Fatalf("list = %+v", list)
	}
}

func TestPprofIsServed(t *testing.T) {
	ts := newTestServer(t, Config{})
	if code, body := get(t, ts.URL+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/: %d", code)
	}
}
