package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

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
}

// Server is the debug HTTP server.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New validates cfg and builds the handlers.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" || cfg.Log == nil || cfg.Pods == nil {
		return nil, errors.New("server: Addr, Log and Pods are required")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /pods", s.pods)
	// Go's profiler, registered explicitly (no package-level DefaultServeMux side effects).
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return s, nil
}

// Handler serves the endpoints; tests use it without a listener.
func (s *Server) Handler() http.Handler { return s.mux }

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
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
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
