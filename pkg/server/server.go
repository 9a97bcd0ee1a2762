package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Check is one named health check; it returns nil when healthy.
type Check func(ctx context.Context) error

// Config wires the server to the rest of the agent.
type Config struct {
	Addr   string           // required, e.g. 127.0.0.1:10248
	Log    *logrus.Entry    // required
	Pods   func() []*v1.Pod // required: the pods the node runs, with status
	Health map[string]Check // run by /healthz, in name order
	Ready  func() error     // /readyz; nil means always ready
	// CheckTimeout bounds each health check; default 2s.
	CheckTimeout time.Duration

	// Metrics is served on /metrics in Prometheus' text format; nil serves no /metrics.
	Metrics prometheus.Gatherer
	// PodDebug returns the timeline of the pod with uid as a JSON-encodable value, or false
	// when the agent has no such pod; served on /debug/pods/<uid>. Nil serves none.
	PodDebug func(uid string) (any, bool)

	// Token, when set, is required on every request as "Authorization: Bearer <token>";
	// requests without it get 401. It is required when Addr is not a loopback address: the
	// server shows pod specs, their environment included, and a profiler.
	Token string
}

// Server is the debug HTTP server.
type Server struct {
	cfg  Config
	mux  *http.ServeMux
	want []byte // the whole Authorization header a request must carry; nil: none needed
}

// New validates cfg and builds the handlers.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" || cfg.Log == nil || cfg.Pods == nil {
		return nil, errors.New("server: Addr, Log and Pods are required")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.Token == "" && !IsLoopback(cfg.Addr) {
		return nil, fmt.Errorf("debug server: %s is not a loopback address, and serving there needs a bearer token (--debug-token-file)", cfg.Addr)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	if cfg.Token != "" {
		s.want = []byte("Bearer " + cfg.Token)
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /pods", s.pods)
	if cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{
			ErrorLog: cfg.Log, ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	if cfg.PodDebug != nil {
		s.mux.HandleFunc("GET /debug/pods/{uid}", s.podDebug)
	}
	// Go's profiler, registered explicitly (no package-level DefaultServeMux side effects).
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return s, nil
}

// Handler serves the endpoints, behind the token check when there is a token; tests use it
// without a listener.
func (s *Server) Handler() http.Handler {
	if s.want == nil {
		return s.mux
	}
	return http.HandlerFunc(s.authorized)
}

// authorized serves r only if it carries the token. The comparison takes the same time
// whatever the header holds, so the token cannot be guessed byte by byte from timings.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), s.want) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nodeagent"`)
		http.Error(w, "Unauthorized: this endpoint needs Authorization: Bearer <the --debug-token-file token>", http.StatusUnauthorized)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// IsLoopback reports whether addr (host:port) listens on loopback only: localhost or a
// loopback IP. An empty host (":10248") means every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Listen binds the address now, so a bad or busy address is an error at start, not later.
func (s *Server) Listen() (net.Listener, error) {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("debug server: listen on %s: %w", s.cfg.Addr, err)
	}
	return l, nil
}

// Serve serves on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	s.cfg.Log.WithField("address", l.Addr().String()).Info("debug server listening")
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("debug server: %w", err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(s.cfg.Health))
	for n := range s.cfg.Health {
		names = append(names, n)
	}
	sort.Strings(names)
	var failed []string
	for _, n := range names {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
		err := s.cfg.Health[n](ctx)
		cancel()
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", n, err))
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(failed) > 0 {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "unhealthy\n%s\n", strings.Join(failed, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) podDebug(w http.ResponseWriter, r *http.Request) {
	d, ok := s.cfg.PodDebug(r.PathValue("uid"))
	if !ok {
		http.Error(w, "no pod with that UID on this node", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		s.cfg.Log.WithError(err).Debug("writing /debug/pods failed")
	}
}

func (s *Server) pods(w http.ResponseWriter, _ *http.Request) {
	list := v1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
	for _, p := range s.cfg.Pods() {
		p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		list.Items = append(list.Items, *p)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&list); err != nil {
		s.cfg.Log.WithError(err).Debug("writing /pods failed")
	}
}
