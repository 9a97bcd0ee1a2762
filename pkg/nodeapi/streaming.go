package nodeapi

import (
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/proxy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// streamOptions reads the exec/attach stream flags as the kubelet's
// remotecommand.NewOptions: the API server sends input, output, error and tty as "1"; a
// terminal has no separate stderr, and some stream is needed.
func streamOptions(q url.Values) (cri.StreamOptions, error) {
	flag := func(name string) bool {
		v := q.Get(name)
		return v == "1" || v == "true"
	}
	o := cri.StreamOptions{
		Stdin:  flag(v1.ExecStdinParam),
		Stdout: flag(v1.ExecStdoutParam),
		Stderr: flag(v1.ExecStderrParam),
		TTY:    flag(v1.ExecTTYParam),
	}
	if o.TTY {
		o.Stderr = false
	}
	if !o.Stdin && !o.Stdout && !o.Stderr {
		return o, errorf(http.StatusBadRequest, "you must specify at least 1 of stdin, stdout, stderr (input, output, error)")
	}
	return o, nil
}

// exec serves /exec/{namespace}/{pod}[/{uid}]/{container}?command=...&stdin=1...
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cmd := q[v1.ExecCommandParam]
	if len(cmd) == 0 || cmd[0] == "" {
		http.Error(w, "exec: no command given (command=...)", http.StatusBadRequest)
		return
	}
	s.stream(w, r, func(id string, o cri.StreamOptions) (*url.URL, error) {
		return s.cfg.Runtime.Exec(r.Context(), id, cmd, o)
	})
}

// attach serves /attach/{namespace}/{pod}[/{uid}]/{container}.
func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, func(id string, o cri.StreamOptions) (*url.URL, error) {
		return s.cfg.Runtime.Attach(r.Context(), id, o)
	})
}

// stream finds the running container, asks the runtime for a streaming URL and proxies the
// upgraded connection to it.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, prepare func(id string, o cri.StreamOptions) (*url.URL, error)) {
	opts, err := streamOptions(r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	t, err := s.findTarget(r, true)
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := t.runningID()
	if err != nil {
		writeError(w, err)
		return
	}
	u, err := prepare(id, opts)
	if err != nil {
		writeError(w, runtimeError(err))
		return
	}
	s.proxy(w, r, u)
}

// portForward serves /portForward/{namespace}/{pod}[/{uid}]. Ports come in the SPDY
// streams' headers, which the runtime reads; "port" query parameters (websocket clients)
// are passed on.
func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	var ports []int32
	for _, p := range r.URL.Query()[v1.PortHeader] {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			http.Error(w, "port-forward: port "+strconv.Quote(p)+" is not a port number (1-65535)", http.StatusBadRequest)
			return
		}
		ports = append(ports, int32(n))
	}
	t, err := s.findTarget(r, false)
	if err != nil {
		writeError(w, err)
		return
	}
	sbs, err := s.cfg.Runtime.ListPodSandbox(r.Context(), &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{cri.LabelPodUID: string(t.pod.UID)},
	})
	if err != nil {
		writeError(w, runtimeError(err))
		return
	}
	if len(sbs) == 0 {
		writeError(w, errorf(http.StatusBadRequest, "pod %s has no ready sandbox to forward into", t.ref()))
		return
	}
	sort.Slice(sbs, func(i, j int) bool { return sbs[i].CreatedAt > sbs[j].CreatedAt })
	u, err := s.cfg.Runtime.PortForward(r.Context(), sbs[0].Id, ports)
	if err != nil {
		writeError(w, runtimeError(err))
		return
	}
	s.proxy(w, r, u)
}

// proxy hands the connection to the runtime's streaming server, as the kubelet always
// does: an upgrade (SPDY, WebSocket) is required, and the bytes flow both ways until
// either side closes.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, u *url.URL) {
	h := proxy.NewUpgradeAwareHandler(u, nil, false, true, &proxyResponder{s: s})
	h.ServeHTTP(w, r)
}

type proxyResponder struct{ s *Server }

// Error answers the proxy's failures: its own API errors (a request that is not an upgrade
// is a 400) with their status, anything else (the runtime's streaming server unreachable)
// with 500.
func (p *proxyResponder) Error(w http.ResponseWriter, r *http.Request, err error) {
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Code != 0 {
		http.Error(w, err.Error(), int(st.Status().Code))
		return
	}
	p.s.cfg.Log.WithError(err).WithField("path", r.URL.Path).Warn("node API: proxying a stream to the runtime failed")
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// runtimeError maps a runtime failure to its status: a container that is gone is 404, a
// runtime that is down 503.
func runtimeError(err error) error {
	switch {
	case errdefs.IsNotFound(err):
		return errorf(http.StatusNotFound, "%v", err)
	case cri.IsRetryable(err):
		return errorf(http.StatusServiceUnavailable, "%v", err)
	case errdefs.IsInvalidArgument(err):
		return errorf(http.StatusBadRequest, "%v", err)
	default:
		return err
	}
}
