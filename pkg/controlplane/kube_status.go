package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
)

// ReporterConfig configures NewReporter.
type ReporterConfig struct {
	Client   kubeclient.Interface
	Source   *KubeSource // the API's view of the node's pods, mirror pods included
	NodeName string
	// NodeUID is the Node's UID once registered ("" until then): mirror pods are owned by
	// the Node, which NodeRestriction requires, so none is created before it is known.
	NodeUID func() types.UID
	// Pods are the pods the agent runs, with their latest status (podmanager's Pods).
	Pods func() []*v1.Pod
	Log  *logrus.Entry
	// Period is how often everything is compared with the API even without a change; it
	// bounds how long statuses lag after an API outage. Default 10 s.
	Period time.Duration
}

// Reporter is the one goroutine that writes to the API server on behalf of pods: it patches
// pod statuses (API pods, and static pods' mirror pods) with what changed, and keeps a mirror
// pod for every static pod. It is level-triggered: each pass compares the agent's statuses
// with the API's current objects, so a missed patch, a conflict or an outage is repaired by
// the next pass.
type Reporter struct {
	cfg     ReporterConfig
	log     *logrus.Entry
	changed chan struct{}

	mu       sync.Mutex
	failing  string               // the last distinct API error, logged once
	noMirror map[types.UID]string // static pods that cannot have a mirror pod, logged once
}

// NewReporter builds the reporter; Run starts it.
func NewReporter(cfg ReporterConfig) *Reporter {
	if cfg.Period <= 0 {
		cfg.Period = 10 * time.Second
	}
	return &Reporter{cfg: cfg, log: cfg.Log.WithField("component", "status"), changed: make(chan struct{}, 1), noMirror: map[types.UID]string{}}
}

// Notify asks for a pass soon. It never blocks.
func (r *Reporter) Notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Run reports until ctx ends. Passes are at most every 100 ms, so a burst of changes costs
// one pass.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Period)
	defer t.Stop()
	for {
		r.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		case <-t.C:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *Reporter) pass(ctx context.Context) {
	pods := r.cfg.Pods()
	var errs []error
	if err := r.syncMirrors(ctx, pods); err != nil {
		errs = append(errs, err)
	}
	for _, p := range pods {
		if err := r.report(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	r.noteErrors(errs)
}

// noteErrors logs a new kind of failure once, and the recovery once.
func (r *Reporter) noteErrors(errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(errs) == 0 {
		if r.failing != "" {
			r.log.Info("pod statuses reach the API server again")
			r.failing = ""
		}
		return
	}
	if msg := errs[0].Error(); msg != r.failing {
		r.failing = msg
		r.log.WithError(errs[0]).WithField("failures", len(errs)).Warn("cannot write pod status to the API server; retrying")
	}
}

// target is the API object whose status shows p: the pod itself for API pods, its mirror pod
// for static ones. nil when there is none (yet).
func (r *Reporter) target(p *v1.Pod) *v1.Pod {
	api := r.cfg.Source.Pod(p.Namespace, p.Name)
	if api == nil {
		return nil
	}
	switch p.Annotations[AnnotationConfigSource] {
	case SourceKube:
		if api.UID == p.UID {
			return api
		}
	case SourceFile:
		if api.Annotations[AnnotationMirror] == mirrorHash(p) {
			return api
		}
	}
	return nil
}

// report patches the target's status when it differs from p's.
func (r *Reporter) report(ctx context.Context, p *v1.Pod) error {
	t := r.target(p)
	if t == nil {
		return nil
	}
	old, err := normalized(t.Status)
	if err != nil {
		return err
	}
	merged, err := normalized(mergeStatus(t.Status, p.Status))
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(old, merged) {
		return nil
	}
	patch, err := statusPatch(t.UID, old, merged)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = r.cfg.Client.CoreV1().Pods(t.Namespace).Patch(cctx, t.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	switch {
	case err == nil:
		r.log.WithFields(logrus.Fields{"pod": t.Namespace + "/" + t.Name, "phase": merged.Phase}).Debug("pod status reported")
		return nil
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return nil // deleted or replaced meanwhile; the next pass sees the new object
	default:
		return fmt.Errorf("patch status of pod %s/%s: %w", t.Namespace, t.Name, err)
	}
}

// mergeStatus lays what the agent owns over the API's status, keeping what others wrote
// there: conditions of other types (a controller's DisruptionTarget, readiness gates'
// conditions), nominatedNodeName, resize and the like.
func mergeStatus(api, mine v1.PodStatus) v1.PodStatus {
	out := *api.DeepCopy()
	out.Phase = mine.Phase
	out.ObservedGeneration = mine.ObservedGeneration
	out.Message, out.Reason = mine.Message, mine.Reason
	out.HostIP, out.HostIPs = mine.HostIP, mine.HostIPs
	out.PodIP, out.PodIPs = mine.PodIP, mine.PodIPs
	if mine.StartTime != nil {
		out.StartTime = mine.StartTime
	}
	if mine.QOSClass != "" {
		out.QOSClass = mine.QOSClass
	}
	out.InitContainerStatuses = mine.InitContainerStatuses
	out.ContainerStatuses = mine.ContainerStatuses
	mineTypes := map[v1.PodConditionType]bool{}
	for _, c := range mine.Conditions {
		mineTypes[c.Type] = true
	}
	var conds []v1.PodCondition
	for _, c := range api.Conditions {
		if !mineTypes[c.Type] {
			conds = append(conds, c)
		}
	}
	out.Conditions = append(conds, mine.Conditions...)
	return out
}

// normalized round-trips a status through JSON, as the API server stores it (times to the
// second), so a comparison with the API's copy is not fooled by precision.
func normalized(s v1.PodStatus) (v1.PodStatus, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return v1.PodStatus{}, err
	}
	var out v1.PodStatus
	err = json.Unmarshal(b, &out)
	return out, err
}

// statusPatch is the strategic merge patch from old to new, with the pod's UID as a
// precondition: the API server refuses it if the name now belongs to another pod.
func statusPatch(uid types.UID, old, new v1.PodStatus) ([]byte, error) {
	oldJSON, err := json.Marshal(v1.Pod{Status: old})
	if err != nil {
		return nil, err
	}
	newJSON, err := json.Marshal(v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}, Status: new})
	if err != nil {
		return nil, err
	}
	return strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, v1.Pod{})
}
