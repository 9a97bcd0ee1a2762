package prober

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Kind is which of a container's probes a target is.
type Kind string

// The three probe kinds of a container.
const (
	Liveness  Kind = "liveness"
	Readiness Kind = "readiness"
	Startup   Kind = "startup"
)

// Title is the kubelet's capitalised name of the kind ("Liveness"), which users search
// events, logs and metrics for.
func (k Kind) Title() string {
	switch k {
	case Liveness:
		return "Liveness"
	case Readiness:
		return "Readiness"
	case Startup:
		return "Startup"
	}
	return string(k)
}

// Result is a probe's settled result.
type Result int

// Probe results. Unknown is startup's initial value and the answer for a target that does
// not exist.
const (
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return "unknown"
}

// Target is one probe of one container instance.
type Target struct {
	PodUID        types.UID
	PodRef        string // "namespace/name", for logs
	ContainerName string
	ContainerID   string // CRI ID of this instance; a restarted container is a new target
	PodIP         string
	Ports         []v1.ContainerPort // for named ports
	Kind          Kind
	// Probe is the probe as in the spec. Zero fields take the Kubernetes defaults (period
	// 10s, timeout 1s, success 1, failure 3); successThreshold is forced to 1 for liveness
	// and startup, as validation demands.
	Probe *v1.Probe
	// StartedAt is when the container started, for initialDelaySeconds; zero means now.
	StartedAt time.Time
}

// Update is sent when a probe's settled result (after thresholds) changes.
type Update struct {
	PodUID        types.UID
	ContainerID   string
	ContainerName string
	Kind          Kind
	Result        Result
	Message       string // why it failed (probe output, HTTP status, dial error), "" on success
}

// Execer runs a command in a container; pkg/cri's Client implements it. A command that ran
// and exited non-zero is not an error. Errors carry errdefs classes: DeadlineExceeded means
// the command outlived timeout, Unavailable that the runtime could not be reached. The call
// itself must be bounded (pkg/cri adds its call timeout to timeout).
type Execer interface {
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error)
}

// Kubernetes' probe defaults (pkg/apis/core/v1/defaults.go).
const (
	defaultPeriod           = 10 * time.Second
	defaultTimeout          = time.Second
	defaultSuccessThreshold = 1
	defaultFailureThreshold = 3
)

// settings are a probe's timing and thresholds with the defaults applied.
type settings struct {
	initialDelay time.Duration
	period       time.Duration
	timeout      time.Duration
	success      int
	failure      int
}

// settingsOf needs no clamp against overflow, unlike the pod's int64 seconds fields: these
// are int32, and math.MaxInt32 seconds (~68 years) fits a time.Duration with room to spare.
func settingsOf(p *v1.Probe, kind Kind) settings {
	s := settings{
		initialDelay: time.Duration(max(p.InitialDelaySeconds, 0)) * time.Second,
		period:       time.Duration(p.PeriodSeconds) * time.Second,
		timeout:      time.Duration(p.TimeoutSeconds) * time.Second,
		success:      int(p.SuccessThreshold),
		failure:      int(p.FailureThreshold),
	}
	if s.period <= 0 {
		s.period = defaultPeriod
	}
	if s.timeout <= 0 {
		s.timeout = defaultTimeout
	}
	if s.success <= 0 || kind != Readiness {
		s.success = defaultSuccessThreshold
	}
	if s.failure <= 0 {
		s.failure = defaultFailureThreshold
	}
	return s
}

// initialResult is what a probe reports before it settles, as the kubelet: a container is
// not ready until proven so, alive until proven dead, and not known to have started.
func initialResult(kind Kind) Result {
	switch kind {
	case Readiness:
		return Failure
	case Liveness:
		return Success
	}
	return Unknown
}
