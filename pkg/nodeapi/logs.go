package nodeapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// parseLogOptions reads v1.PodLogOptions from the query as the kubelet does (with its
// legacy "tail" spelling) and validates them as the API server's ValidatePodLogOptions.
func parseLogOptions(q url.Values, now time.Time) (logOptions, bool, error) {
	o := logOptions{tail: -1, stdout: true, stderr: true}
	var previous bool
	boolParam := func(name string, dst *bool) error {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s=%q is not a boolean", name, v)
			}
			*dst = b
		}
		return nil
	}
	intParam := func(name string, min int64, dst *int64) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false, fmt.Errorf("%s=%q is not an integer", name, v)
		}
		if n < min {
			return false, fmt.Errorf("%s=%d must be at least %d", name, n, min)
		}
		*dst = n
		return true, nil
	}
	for name, dst := range map[string]*bool{"follow": &o.follow, "previous": &previous, "timestamps": &o.timestamps} {
		if err := boolParam(name, dst); err != nil {
			return o, false, err
		}
	}
	if t := q.Get("tail"); t != "" && q.Get("tailLines") == "" && t != "all" {
		q = cloneWith(q, "tailLines", t)
	}
	tailSet, err := intParam("tailLines", 0, &o.tail)
	if err != nil {
		return o, false, err
	}
	if _, err := intParam("limitBytes", 1, &o.limit); err != nil {
		return o, false, err
	}
	var sinceSeconds int64
	sinceSet, err := intParam("sinceSeconds", 1, &sinceSeconds)
	if err != nil {
		return o, false, err
	}
	if sinceSet {
		// Beyond what a Duration holds it means "from the start", never a time that wrapped
		// into the future.
		if sinceSeconds < math.MaxInt64/int64(time.Second) {
			o.since = now.Add(-time.Duration(sinceSeconds) * time.Second)
		} else {
			o.since = time.Unix(0, 0)
		}
	}
	if v := q.Get("sinceTime"); v != "" {
		if sinceSet {
			return o, false, errors.New("at most one of sinceSeconds and sinceTime may be given")
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, false, fmt.Errorf("sinceTime=%q is not an RFC 3339 time", v)
		}
		o.since = t
	}
	switch s := q.Get("stream"); s {
	case "", v1.LogStreamAll:
	case v1.LogStreamStdout:
		o.stderr = false
	case v1.LogStreamStderr:
		o.stdout = false
	default:
		return o, false, fmt.Errorf("stream=%q must be %s, %s or %s", s, v1.LogStreamAll, v1.LogStreamStdout, v1.LogStreamStderr)
	}
	if tailSet && (!o.stdout || !o.stderr) {
		return o, false, errors.New("tailLines cannot be combined with a single stream")
	}
	return o, previous, nil
}

func cloneWith(q url.Values, k, v string) url.Values {
	c := url.Values{}
	for key, vals := range q {
		c[key] = vals
	}
	c.Set(k, v)
	return c
}

// containerLogs serves /containerLogs/{namespace}/{pod}/{container}.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	t, err := s.findTarget(r, true)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, previous, err := parseLogOptions(r.URL.Query(), s.cfg.Clock.Now())
	if err != nil {
		http.Error(w, "bad log options: "+err.Error(), http.StatusBadRequest)
		return
	}
	id, restart, err := t.logInstance(previous)
	if err != nil {
		writeError(w, err)
		return
	}
	path, running, err := s.logPath(r.Context(), t, id, restart)
	if err != nil {
		writeError(w, err)
		return
	}
	if !running {
		opts.follow = false // an instance that ended writes nothing more: its log ends here
	}
	log := s.cfg.Log.WithFields(logrus.Fields{"pod": t.ref(), "container": t.container, "path": path})
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	fl := &follower{
		running: func(ctx context.Context) bool {
			st, err := s.cfg.Runtime.ContainerStatus(ctx, id, false)
			if err != nil {
				return !errdefs.IsNotFound(err) // the runtime may be back in a moment
			}
			return st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING ||
				st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_CREATED
		},
		wait: func(ctx context.Context) error {
			tm := s.cfg.Clock.NewTimer(s.cfg.LogPoll)
			defer tm.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tm.C():
				return nil
			}
		},
		checkEvery: max(int(time.Second/s.cfg.LogPoll), 1),
	}
	// The header goes out with the first write, so an unopenable file is still a clean error.
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	err = copyLog(r.Context(), path, opts, w, flush, fl, func(err error) {
		log.WithError(err).Debug("node API: skipping a malformed log line")
	})
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, errorf(http.StatusNotFound, "log file of container %q of pod %s does not exist", t.container, t.ref()))
		return
	}
	if err != nil {
		log.WithError(err).Warn("node API: reading a container log failed")
	}
}

// logInstance picks the container instance whose log is asked for: the current one, or
// with previous the one before it (the kubelet answers 400 when there is none).
func (t *target) logInstance(previous bool) (id string, restart int32, err error) {
	cs := t.status
	if previous {
		if cs == nil || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ContainerID == "" {
			return "", 0, errorf(http.StatusBadRequest, "previous terminated container %q in pod %s not found", t.container, t.ref())
		}
		return runtimeID(cs.LastTerminationState.Terminated.ContainerID), max(cs.RestartCount-1, 0), nil
	}
	if cs == nil || cs.ContainerID == "" {
		reason := "ContainerCreating"
		if cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
			reason = cs.State.Waiting.Reason
		}
		return "", 0, errorf(http.StatusBadRequest, "container %q in pod %s is waiting to start: %s", t.container, t.ref(), reason)
	}
	return runtimeID(cs.ContainerID), cs.RestartCount, nil
}

// logPath is where the instance's log is: the runtime's word while it knows the container,
// else the kubelet's layout the agent creates containers with. running says whether the
// instance may still write.
func (s *Server) logPath(ctx context.Context, t *target, id string, restart int32) (string, bool, error) {
	st, err := s.cfg.Runtime.ContainerStatus(ctx, id, false)
	switch {
	case err == nil && st.GetStatus().GetLogPath() != "":
		state := st.GetStatus().GetState()
		return st.GetStatus().GetLogPath(), state == runtimeapi.ContainerState_CONTAINER_RUNNING || state == runtimeapi.ContainerState_CONTAINER_CREATED, nil
	case err == nil:
		return "", false, errorf(http.StatusInternalServerError, "container %q of pod %s: the runtime reports no log path", t.container, t.ref())
	case errdefs.IsNotFound(err):
		dir := fmt.Sprintf("%s_%s_%s", t.pod.Namespace, t.pod.Name, t.pod.UID)
		return filepath.Join(s.cfg.PodLogsDir, dir, t.container, fmt.Sprintf("%d.log", restart)), false, nil
	default:
		return "", false, errorf(http.StatusServiceUnavailable, "container %q of pod %s: %v", t.container, t.ref(), err)
	}
}
