package podmanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

const sandboxBackoffKey = "sandbox"

// Reasons for a pod without a (working) sandbox, as the kubelet words them.
const (
	reasonNetworkNotReady    = "NetworkNotReady"
	reasonNetworkCheckFailed = "NetworkCheckFailed"
)

// networkReadyRetry is how often a pod waiting for the network looks again.
const networkReadyRetry = time.Second

// ensureSandbox returns the pod's ready sandbox and its config. Without one it cleans up what
// is left of dead sandboxes and starts a new one; then it returns nil and asks for an
// immediate resync, which finds the new sandbox and its IP.
func (w *worker) ensureSandbox(ctx context.Context, pod *v1.Pod, st *podState, again requeue) (*runtimeapi.PodSandbox, *runtimeapi.PodSandboxConfig, bool) {
	if sb := st.readySandbox(); sb != nil {
		w.hadSandbox = true
		cfg, err := w.sandboxConfig(pod, sb.GetMetadata().GetAttempt())
		if err != nil {
			w.sandboxErr, w.sandboxReason = err.Error(), ""
			again(w.backoff.Failed(sandboxBackoffKey))
			return nil, nil, false
		}
		w.sandboxErr, w.sandboxReason = "", ""
		if st.sandboxStatus != nil {
			w.podIPs = sandboxIPs(st.sandboxStatus)
		}
		return sb, cfg, false
	}

	acted := w.cleanupDeadSandboxes(ctx, pod, st)
	if rem := w.backoff.Remaining(sandboxBackoffKey); rem > 0 {
		again(rem)
		return nil, nil, acted
	}
	var attempt uint32
	if len(st.sandboxes) > 0 {
		attempt = st.sandboxes[0].GetMetadata().GetAttempt() + 1
	}
	if !pod.Spec.HostNetwork && w.m.cfg.Network != nil {
		if err := w.m.cfg.Network.Ready(); err != nil {
			// Not a sandbox failure: no backoff, the pod starts as soon as the network is up.
			w.sandboxErr, w.sandboxReason = "network is not ready: "+err.Error(), reasonNetworkNotReady
			again(networkReadyRetry)
			return nil, nil, acted
		}
	}
	start := w.stepStart()
	fail := func(err error) (*runtimeapi.PodSandbox, *runtimeapi.PodSandboxConfig, bool) {
		w.step(StepSandbox, "", "", start, err)
		if err.Error() != w.sandboxErr {
			w.event(pod, v1.EventTypeWarning, eventSandboxFailed, "Failed to create pod sandbox: "+err.Error())
		}
		w.sandboxErr, w.sandboxReason = err.Error(), ""
		wait := w.backoff.Failed(sandboxBackoffKey)
		w.log.WithError(err).WithField("retryIn", wait).Warn("creating the pod sandbox failed")
		again(wait)
		return nil, nil, true
	}
	cfg, err := w.sandboxConfig(pod, attempt)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return fail(fmt.Errorf("create pod log directory: %w", err))
	}
	if !w.volRun.start.IsZero() {
		// The volumes this sandbox starts with: part of this start, worth showing.
		w.tl.record(StepVolumes, "", "", w.volRun.start, w.volRun.end, nil)
	}
	start = w.stepStart() // the sandbox step is RunPodSandbox itself
	id, err := w.m.rt.RunPodSandbox(ctx, cfg, runtimeHandler(pod))
	if err != nil {
		return fail(err)
	}
	w.step(StepSandbox, "", "", start, nil)
	if !w.hadSandbox {
		w.hadSandbox, w.startPending = true, true
	}
	w.m.own(id, w.uid)
	w.backoff.Forget(sandboxBackoffKey)
	w.sandboxErr, w.sandboxReason = "", ""
	w.podIPs = nil
	w.log.WithFields(logrus.Fields{"sandbox": id, "attempt": attempt}).Info("pod sandbox started")
	again(0)
	return nil, nil, true
}

// cleanupDeadSandboxes stops containers still running outside a ready sandbox, stops dead
// sandboxes, and removes all but the newest dead sandbox that holds containers (its
// containers carry the restart count and the last exit shown in status).
func (w *worker) cleanupDeadSandboxes(ctx context.Context, pod *v1.Pod, st *podState) bool {
	acted := false
	for _, c := range st.containers {
		if c.state() == runtimeapi.ContainerState_CONTAINER_RUNNING {
			if err := w.m.rt.StopContainer(ctx, c.c.Id, gracePeriod(pod)); err != nil && !errdefs.IsNotFound(err) {
				w.log.WithError(err).WithField("container", c.name()).Warn("stopping a container of a dead sandbox failed")
			}
			acted = true
		}
	}
	keptOne := false
	for _, sb := range st.sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if err := w.m.rt.StopPodSandbox(ctx, sb.Id); err != nil && !errdefs.IsNotFound(err) {
				w.log.WithError(err).WithField("sandbox", sb.Id).Warn("stopping a stale sandbox failed")
			}
			acted = true
		}
		if !keptOne && st.hasContainersIn(sb.Id) {
			keptOne = true
			continue
		}
		if err := w.m.rt.RemovePodSandbox(ctx, sb.Id); err != nil && !errdefs.IsNotFound(err) {
			w.log.WithError(err).WithField("sandbox", sb.Id).Warn("removing a dead sandbox failed")
		}
		acted = true
	}
	return acted
}

func (s *podState) hasContainersIn(sandboxID string) bool {
	for _, c := range s.containers {
		if c.c.PodSandboxId == sandboxID {
			return true
		}
	}
	return false
}

// runtimeHandler maps runtimeClassName straight to a CRI runtime handler: without an API
// server there are no RuntimeClass objects to look the handler up in.
func runtimeHandler(pod *v1.Pod) string {
	if pod.Spec.RuntimeClassName != nil {
		return *pod.Spec.RuntimeClassName
	}
	return ""
}

// podLogDir is /var/log/pods/<namespace>_<name>_<uid>, the kubelet's layout.
func (m *Manager) podLogDir(pod *v1.Pod) string {
	return filepath.Join(m.cfg.PodLogsDir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
}

// sandboxConfig is a pure function of the pod and the attempt, so the same config can be
// rebuilt for CreateContainer on every sync.
func (w *worker) sandboxConfig(pod *v1.Pod, attempt uint32) (*runtimeapi.PodSandboxConfig, error) {
	dns, err := dnsConfig(pod, w.m.cfg.ResolvConf)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	for k, v := range w.m.ownLabels() {
		labels[k] = v
	}
	labels[cri.LabelPodName] = pod.Name
	labels[cri.LabelPodNamespace] = pod.Namespace
	labels[cri.LabelPodUID] = string(pod.UID)
	annotations := map[string]string{}
	for k, v := range pod.Annotations {
		annotations[k] = v
	}
	annotations[cri.AnnotationPodTerminationGracePeriod] = strconv.FormatInt(gracePeriod(pod), 10)

	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      pod.Name,
			Namespace: pod.Namespace,
			Uid:       string(pod.UID),
			Attempt:   attempt,
		},
		Hostname:     podHostname(pod),
		LogDirectory: w.m.podLogDir(pod),
		DnsConfig:    dns,
		PortMappings: portMappings(pod),
		Labels:       labels,
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: podSecurityContext(pod),
			Sysctls:         podSysctls(pod),
		},
	}, nil
}

// podHostname follows the kubelet: spec.hostname or the pod name, cut to 63 characters
// without a trailing '-' or '.'; empty for hostNetwork pods, which keep the node's.
func podHostname(pod *v1.Pod) string {
	if pod.Spec.HostNetwork {
		return ""
	}
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

func portMappings(pod *v1.Pod) []*runtimeapi.PortMapping {
	var out []*runtimeapi.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			out = append(out, &runtimeapi.PortMapping{
				Protocol:      protocol(p.Protocol),
				ContainerPort: p.ContainerPort,
				HostPort:      p.HostPort,
				HostIp:        p.HostIP,
			})
		}
	}
	return out
}

func protocol(p v1.Protocol) runtimeapi.Protocol {
	switch p {
	case v1.ProtocolUDP:
		return runtimeapi.Protocol_UDP
	case v1.ProtocolSCTP:
		return runtimeapi.Protocol_SCTP
	default:
		return runtimeapi.Protocol_TCP
	}
}

func podSysctls(pod *v1.Pod) map[string]string {
	if pod.Spec.SecurityContext == nil || len(pod.Spec.SecurityContext.Sysctls) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		out[s.Name] = s.Value
	}
	return out
}

// sandboxIPs lists the sandbox's addresses, primary first.
func sandboxIPs(s *runtimeapi.PodSandboxStatus) []string {
	n := s.GetNetwork()
	if n == nil || n.Ip == "" {
		return nil
	}
	ips := []string{n.Ip}
	for _, a := range n.AdditionalIps {
		ips = append(ips, a.Ip)
	}
	return ips
}
