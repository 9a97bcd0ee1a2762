// Command testserver is the e2e tests' probe target: one static binary that answers HTTP, TCP
// and gRPC health checks, each of which a test turns from passing to failing (and back) by
// creating or removing a file inside the container with CRI ExecSync.
//
//	HTTP :8080   /healthz  200 "ok", 500 while /tmp/unhealthy exists
//	             /ready    200 while /tmp/ready exists, else 503
//	             /slow?d=2s  waits d, then 200
//	             /redirect?to=URL  302 to URL
//	             /headers  the request's Host and headers, one "Key: value" per line
//	             /         200 with the host name
//	TCP  :7070   accepts and closes; listening only while /tmp/no-tcp is absent
//	gRPC :9090   grpc.health.v1: "" and "nodeagent.test" SERVING, NOT_SERVING while
//	             /tmp/grpc-not-serving exists; other services NOT_FOUND
//
// -startup-delay keeps every port closed for that long (a slow starter, for startup probes).
// On SIGTERM it prints "got SIGTERM" to stdout, keeps serving for -term-delay, and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// pollInterval is how often the toggle files are looked at.
const pollInterval = 200 * time.Millisecond

// grpcServices are the services the health server reports on; "" is the server as a whole.
var grpcServices = []string{"", "nodeagent.test"}

type config struct {
	httpAddr, tcpAddr, grpcAddr                          string
	unhealthyFile, readyFile, noTCPFile, grpcNotServFile string
	startupDelay, termDelay                              time.Duration
	logRequests                                          bool
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func httpHandler(cfg config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if exists(cfg.unhealthyFile) {
			http.Error(w, "unhealthy: "+cfg.unhealthyFile+" exists", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if !exists(cfg.readyFile) {
			http.Error(w, "not ready: no "+cfg.readyFile, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, "want ?d=DURATION: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
			fmt.Fprintf(w, "slept %s\n", d)
		case <-r.Context().Done(): // the client gave up
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		to := r.URL.Query().Get("to")
		if to == "" {
			http.Error(w, "want ?to=URL", http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, to, http.StatusFound)
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		lines := []string{"Host: " + r.Host}
		for k, vs := range r.Header {
			for _, v := range vs {
				lines = append(lines, k+": "+v)
			}
		}
		sort.Strings(lines[1:])
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		fmt.Fprintln(w, host)
	})
	if !cfg.logRequests {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("http %s %s from %s (%s)", r.Method, r.URL, r.RemoteAddr, r.UserAgent())
		mux.ServeHTTP(w, r)
	})
}

// serveTCP keeps a listener on addr open while cfg.noTCPFile is absent: connections are
// accepted and closed at once, so a TCP probe sees the port open or refused.
func serveTCP(ctx context.Context, cfg config) {
	var l net.Listener
	defer func() {
		if l != nil {
			l.Close()
		}
	}()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		switch want := !exists(cfg.noTCPFile); {
		case want && l == nil:
			var err error
			if l, err = net.Listen("tcp", cfg.tcpAddr); err != nil {
				log.Printf("tcp: listen %s: %v", cfg.tcpAddr, err)
				l = nil
			} else {
				log.Printf("tcp: listening on %s", cfg.tcpAddr)
				go acceptAndClose(l)
			}
		case !want && l != nil:
			l.Close()
			l = nil
			log.Printf("tcp: %s closed (%s exists)", cfg.tcpAddr, cfg.noTCPFile)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func acceptAndClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed
		}
		c.Close()
	}
}

// watchGRPCHealth sets every service NOT_SERVING while cfg.grpcNotServFile exists.
func watchGRPCHealth(ctx context.Context, cfg config, hs *health.Server) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if exists(cfg.grpcNotServFile) {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if st != last {
			for _, s := range grpcServices {
				hs.SetServingStatus(s, st)
			}
			log.Printf("grpc: health %s", st)
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func run() error {
	var cfg config
	flag.StringVar(&cfg.httpAddr, "http-addr", ":8080", "HTTP listen address")
	flag.StringVar(&cfg.tcpAddr, "tcp-addr", ":7070", "TCP listen address (open while -no-tcp-file is absent)")
	flag.StringVar(&cfg.grpcAddr, "grpc-addr", ":9090", "gRPC health listen address")
	flag.StringVar(&cfg.unhealthyFile, "unhealthy-file", "/tmp/unhealthy", "while it exists, /healthz answers 500")
	flag.StringVar(&cfg.readyFile, "ready-file", "/tmp/ready", "while it exists, /ready answers 200")
	flag.StringVar(&cfg.noTCPFile, "no-tcp-file", "/tmp/no-tcp", "while it exists, the TCP port is closed")
	flag.StringVar(&cfg.grpcNotServFile, "grpc-not-serving-file", "/tmp/grpc-not-serving", "while it exists, gRPC health is NOT_SERVING")
	flag.DurationVar(&cfg.startupDelay, "startup-delay", 0, "wait this long before opening any port")
	flag.DurationVar(&cfg.termDelay, "term-delay", 0, "after SIGTERM, keep serving this long before exiting 0")
	flag.BoolVar(&cfg.logRequests, "log-requests", false, "log every HTTP request")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	// Signals are caught from the start, so a SIGTERM during the startup delay is seen too.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if cfg.startupDelay > 0 {
		log.Printf("starting: ports stay closed for %s", cfg.startupDelay)
		select {
		case <-time.After(cfg.startupDelay):
		case sig := <-term:
			return terminate(sig, cfg.termDelay)
		}
	}

	httpLn, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	grpcLn, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return fmt.Errorf("grpc: %w", err)
	}
	errs := make(chan error, 2)
	go func() {
		srv := &http.Server{Handler: httpHandler(cfg), ReadHeaderTimeout: 10 * time.Second}
		errs <- fmt.Errorf("http: %w", srv.Serve(httpLn))
	}()
	hs := health.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go watchGRPCHealth(ctx, cfg, hs)
	go func() { errs <- fmt.Errorf("grpc: %w", gs.Serve(grpcLn)) }()
	go serveTCP(ctx, cfg)
	log.Printf("serving: http %s, tcp %s, grpc %s", cfg.httpAddr, cfg.tcpAddr, cfg.grpcAddr)

	select {
	case sig := <-term:
		return terminate(sig, cfg.termDelay)
	case err := <-errs:
		return err
	}
}

// terminate announces the signal on stdout (the tests look for this line in the container's
// log), serves on for delay, and returns nil so the process exits 0.
func terminate(sig os.Signal, delay time.Duration) error {
	name := "SIGTERM"
	if sig == syscall.SIGINT {
		name = "SIGINT"
	}
	fmt.Fprintf(os.Stdout, "got %s\n", name)
	if delay > 0 {
		time.Sleep(delay)
	}
	fmt.Fprintln(os.Stdout, "exiting")
	return nil
}

func main() {
	if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("testserver: %v", err)
		os.Exit(1)
	}
}
