package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsAreServedFromTheGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "nodeagent_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	ts := newTestServer(t, Config{Metrics: reg})
	code, body := get(t, ts.URL+"/metrics")
	if code != 200 || !strings.Contains(body, "nodeagent_test_total 3") {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	// Only what the agent registered: nothing from client_golang's global registry.
	if strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics serves the default registry's collectors:\n%s", body)
	}
}

func TestNoMetricsWithoutARegistry(t *testing.T) {
	ts := newTestServer(t, Config{})
	if code, _ := get(t, ts.URL+"/metrics"); code != 404 {
		t.Fatalf("/metrics without a registry: %d, want 404", code)
	}
}

func TestDebugPodsServesTheTimelineByUID(t *testing.T) {
	ts := newTestServer(t, Config{PodDebug: func(uid string) (any, bool) {
		if uid != "u1" {
			return nil, false
		}
		return map[string]any{"uid": uid, "steps": []map[string]string{{"step": "sandbox", "duration": "812ms"}}}, true
	}})
	code, body := get(t, ts.URL+"/debug/pods/u1")
	if code != 200 {
		t.Fatalf("/debug/pods/u1: %d %s", code, body)
	}
	var d struct {
		UID   string `json:"uid"`
		Steps []struct {
			Step string `json:"step"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.UID != "u1" || len(d.Steps) != 1 || d.Steps[0].Step != "sandbox" {
		t.Fatalf("body %q: %+v %v", body, d, err)
	}
	if code, body := get(t, ts.URL+"/debug/pods/u2"); code != 404 || !strings.Contains(body, "no pod") {
		t.Fatalf("unknown uid: %d %q", code, body)
	}
}
