package nodeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// Runtime is what the node API asks of the container runtime; *cri.Client is one.
type Runtime interface {
	ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error)
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
	Exec(ctx context.Context, containerID string, cmd []string, opts cri.StreamOptions) (*url.URL, error)
	Attach(ctx context.Context, containerID string, opts cri.StreamOptions) (*url.URL, error)
	PortForward(ctx context.Context, sandboxID string, ports []int32) (*url.URL, error)
}

// Config wires the node API to the rest of the agent.
type Config struct {
	NodeName   string           // required: the Node the reviews are about
	Addr       string           // required, e.g. ":10250"
	Log        *logrus.Entry    // required
	Pods       func() []*v1.Pod // required: the node's pods, with statuses
	Runtime    Runtime          // required
	PodLogsDir string           // required: where logs of containers the runtime forgot are

	// CertFile and KeyFile are the serving certificate and key; both or neither. Without
	// them a self-signed certificate for SelfSignedNames and SelfSignedIPs is kept in
	// CertDir (required then).
	CertFile, KeyFile string
	CertDir           string
	SelfSignedNames   []string
	SelfSignedIPs     []net.IP

	// ClientCAFile is the PEM bundle client certificates are verified against; empty means
	// client certificates are not accepted (the API server then cannot reach the node).
	ClientCAFile string
	// Tokens reviews bearer tokens; nil means they are not accepted.
	Tokens TokenReviewer
	// Access reviews authorization; required.
	Access AccessReviewer

	// Healthz is /healthz's check; nil means always healthy.
	Healthz func(ctx context.Context) error

	// Cache lifetimes; defaults are the kubelet's: 2m, 5m, 30s.
	AuthnTTL, AuthzAllowedTTL, AuthzDeniedTTL time.Duration
	// LogPoll is how often a followed log file is checked for new lines; default 100ms.
	LogPoll time.Duration
	// Clock drives the caches; default the real clock.
	Clock clock.Clock
}

// Server is the node API server.
type Server struct {
	cfg   Config
	authn *authenticator
	authz *authorizer
	mux   *http.ServeMux
	tls   *tls.Config
}

// New validates cfg, loads (or generates) the serving certificate and the client CA bundle,
// and builds the handlers.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.NodeName == "" || cfg.Addr == "" || cfg.Log == nil || cfg.Pods == nil || cfg.Runtime == nil || cfg.Access == nil:
		return nil, errors.New("node API: NodeName, Addr, Log, Pods, Runtime and Access are required")
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		return nil, errors.New("node API: the serving certificate and key go together")
	case cfg.CertFile == "" && cfg.CertDir == "":
		return nil, errors.New("node API: CertDir is required without a serving certificate")
	case !filepath.IsAbs(cfg.PodLogsDir):
		return nil, fmt.Errorf("node API: pod logs dir %q must be absolute", cfg.PodLogsDir)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.AuthnTTL, 2 * time.Minute}, {&cfg.AuthzAllowedTTL, 5 * time.Minute}, {&cfg.AuthzDeniedTTL, 30 * time.Second}, {&cfg.LogPoll, 100 * time.Millisecond}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	cert, err := servingCertificate(cfg.CertFile, cfg.KeyFile, cfg.CertDir, cfg.SelfSignedNames, cfg.SelfSignedIPs, cfg.Clock.Now())
	if err != nil {
		return nil, err
	}
	var cas *x509.CertPool
	if cfg.ClientCAFile != "" {
		if cas, err = loadClientCAs(cfg.ClientCAFile); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:   cfg,
		authn: newAuthenticator(cas, cfg.Tokens, cfg.AuthnTTL, cfg.Clock),
		authz: newAuthorizer(cfg.NodeName, cfg.Access, cfg.AuthzAllowedTTL, cfg.AuthzDeniedTTL, cfg.Clock),
		mux:   http.NewServeMux(),
		tls: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// Asked for, verified by the authenticator: a bad certificate is a 401 with a
			// reason in the log, not a handshake failure the client cannot read.
			ClientAuth: tls.RequestClientCert,
		},
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /pods", s.pods)
	s.mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", s.containerLogs)
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		s.mux.HandleFunc(m+" /exec/{namespace}/{pod}/{container}", s.exec)
		s.mux.HandleFunc(m+" /exec/{namespace}/{pod}/{uid}/{container}", s.exec)
		s.mux.HandleFunc(m+" /attach/{namespace}/{pod}/{container}", s.attach)
		s.mux.HandleFunc(m+" /attach/{namespace}/{pod}/{uid}/{container}", s.attach)
		s.mux.HandleFunc(m+" /portForward/{namespace}/{pod}", s.portForward)
		s.mux.HandleFunc(m+" /portForward/{namespace}/{pod}/{uid}", s.portForward)
	}
	return s, nil
}

// Handler serves the endpoints behind authentication and authorization; tests use it
// without a listener (with r.TLS set for client certificates).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// TLSConfig is the server's TLS configuration (serving certificate, client certificates).
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// Listen binds the address now, so a bad or busy address is an error at start, not later.
func (s *Server) Listen() (net.Listener, error) {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("node API: listen on %s: %w", s.cfg.Addr, err)
	}
	return l, nil
}

// Serve serves TLS on l until ctx ends. Open streams (exec, logs -f) are cut at shutdown:
// they belong to clients that reconnect.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// TLS handshake failures (scanners, clients that do not trust the self-signed
	// certificate) are the client's problem: debug level, not the agent's stderr.
	errLog := s.cfg.Log.WriterLevel(logrus.DebugLevel)
	defer errLog.Close()
	srv.ErrorLog = stdlog.New(errLog, "node API: ", 0)
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if srv.Shutdown(shutdownCtx) != nil {
			srv.Close() // hijacked streams do not end by themselves
		}
	}()
	s.cfg.Log.WithField("address", l.Addr().String()).Info("node API listening")
	if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("node API: %w", err)
	}
	return nil
}

// serveHTTP authenticates, checks the path, authorizes, then routes.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	log := s.cfg.Log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path})
	u, err := s.authn.authenticate(r)
	if err != nil {
		if !errors.Is(err, errNoCredentials) {
			log.WithError(err).Info("node API: request not authenticated")
		}
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if err := checkPath(r.URL); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	attrs := requestAttributes(r)
	d, err := s.authz.authorize(r.Context(), u, attrs)
	if err != nil {
		log.WithError(err).Warn("node API: authorization failed")
		http.Error(w, fmt.Sprintf("Authorization error (user=%s, verb=%s, resource=nodes, subresource=%s)", u.Name, attrs[0].Verb, attrs[0].Subresource), http.StatusInternalServerError)
		return
	}
	if !d.allowed {
		msg := forbiddenMessage(u, attrs)
		log.WithFields(logrus.Fields{"user": u.Name, "reason": d.reason}).Debug("node API: forbidden")
		http.Error(w, msg, http.StatusForbidden)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// checkPath refuses paths that ServeMux would clean and redirect, or whose segments hide a
// slash: every name in a path is a single Kubernetes name.
func checkPath(u *url.URL) error {
	raw := u.EscapedPath()
	for _, seg := range strings.Split(raw, "/")[1:] {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return fmt.Errorf("bad path %q: %v", raw, err)
		}
		if dec == "." || dec == ".." || strings.ContainsAny(dec, "/\\\x00") {
			return fmt.Errorf("bad path %q: a segment is %q; path segments must be plain names", raw, dec)
		}
	}
	if strings.Contains(raw, "//") {
		return fmt.Errorf("bad path %q: empty segment", raw)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Healthz != nil {
		if err := s.cfg.Healthz(r.Context()); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "unhealthy: %v\n", err)
			return
		}
	}
	fmt.Fprint(w, "ok")
}

// pods is the kubelet's /pods: a v1.PodList of the node's pods with their statuses.
func (s *Server) pods(w http.ResponseWriter, _ *http.Request) {
	list := v1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
	for _, p := range s.cfg.Pods() {
		item := *p // the caller's pods are shared; set TypeMeta on a copy
		item.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		list.Items = append(list.Items, item)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&list); err != nil {
		s.cfg.Log.WithError(err).Debug("node API: writing /pods failed")
	}
}
