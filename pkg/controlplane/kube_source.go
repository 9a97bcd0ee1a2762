package controlplane

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
)

// SourceKube is the name of the API server source, used as its pods' config source (the
// kubelet calls it "api" too).
const SourceKube = "api"

// AnnotationMirror marks a mirror pod: the API server's copy of a static pod, created by the
// node agent so kubectl shows it. Its value is the static pod's config hash.
const AnnotationMirror = "kubernetes.io/config.mirror"

// KubeSourceConfig configures NewKubeSource.
type KubeSourceConfig struct {
	Client   kubeclient.Interface
	NodeName string
	Log      *logrus.Entry
	// OnPods is told every pod bound to the node after each change, so KubeConfigs can keep
	// its watches to what they reference. Optional; it must not block.
	OnPods func(pods []*v1.Pod)
}

// KubeSource serves the pods the API server binds to this node (spec.nodeName), and finishes
// their deletion once the pod manager has terminated them.
//
// Pods already in a terminal phase (Succeeded, Failed) are not handed on: they never run
// again, and the manager cleans up what is left of them. Mirror pods (the API's copies of
// static pods) are not either.
type KubeSource struct {
	cfg      KubeSourceConfig
	log      *logrus.Entry
	informer cache.SharedIndexInformer

	mu sync.Mutex
	// deleting holds pods the manager has terminated whose API object still has to be
	// deleted (grace 0, UID precondition), retried until done.
	deleting map[types.UID]*v1.Pod
	changed  chan struct{}
}

// NewKubeSource builds the source; Run starts it.
func NewKubeSource(cfg KubeSourceConfig) (*KubeSource, error) {
	if cfg.Client == nil || cfg.NodeName == "" || cfg.Log == nil {
		return nil, fmt.Errorf("kube source: Client, NodeName and Log are required")
	}
	// Through the typed interface (not a REST client) so a fake clientset serves it in tests.
	selector := fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	pods := cfg.Client.CoreV1().Pods(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	s := &KubeSource{
		cfg: cfg,
		log: cfg.Log.WithField("source", SourceKube),
		// The wrapper lets a client that cannot stream lists (the fake clientset) say so.
		informer: cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, cfg.Client), &v1.Pod{}, 0, cache.Indexers{}),
		deleting: map[types.UID]*v1.Pod{},
		changed:  make(chan struct{}, 1),
	}
	poke := func() {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	if _, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		return nil, fmt.Errorf("kube source: %w", err)
	}
	return s, nil
}

// Run watches the node's pods and calls update with the full desired set after every change,
// the first time once the initial list has arrived. An unreachable API server delays the
// first set (the manager keeps running what it runs) and later only stalls updates: running
// pods are never touched for it. It returns when ctx ends.
func (s *KubeSource) Run(ctx context.Context, update func(pods []*v1.Pod)) error {
	go s.informer.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return nil
	}
	s.log.WithField("node", s.cfg.NodeName).Info("API server pods listed; watching")
	// The tick only retries deletions the API refused; the set is handed over on changes.
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		pods, all := s.desired()
		update(pods)
		if s.cfg.OnPods != nil {
			s.cfg.OnPods(all)
		}
		s.finishDeletions(ctx)
		if !s.waitChange(ctx, retry.C) {
			return nil
		}
	}
}

// waitChange waits for a change of the node's pods, retrying refused deletions on every
// tick meanwhile. It reports false when ctx ended.
func (s *KubeSource) waitChange(ctx context.Context, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.changed:
			return true
		case <-tick:
			s.finishDeletions(ctx)
		}
	}
}

// Pod returns the API's current copy of a pod of this node, or nil.
func (s *KubeSource) Pod(namespace, name string) *v1.Pod {
	obj, ok, err := s.informer.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return obj.(*v1.Pod)
}

// Pods are all the API's pods bound to this node, mirror pods included.
func (s *KubeSource) Pods() []*v1.Pod {
	var out []*v1.Pod
	for _, obj := range s.informer.GetStore().List() {
		out = append(out, obj.(*v1.Pod))
	}
	return out
}

// desired returns the pods the manager keeps (copies, annotated with their source; finished
// ones included), sorted by namespace/name, and every pod bound to the node.
func (s *KubeSource) desired() (run, all []*v1.Pod) {
	all = s.Pods()
	sort.Slice(all, func(i, j int) bool {
		return all[i].Namespace+"/"+all[i].Name < all[j].Namespace+"/"+all[j].Name
	})
	for _, p := range all {
		if _, mirror := p.Annotations[AnnotationMirror]; mirror {
			continue
		}
		// Finished pods stay: the manager keeps their containers (kubectl logs) until the
		// pod is deleted, and never starts anything for a pod whose phase is final.
		c := p.DeepCopy()
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[AnnotationConfigSource] = SourceKube
		run = append(run, c)
	}
	return run, all
}

// PodTerminated is the manager telling the source that a pod's containers and sandbox are
// gone. A pod the API is deleting (deletionTimestamp set) is then deleted for good, as the
// kubelet does: grace 0, with its UID as precondition so a new pod of the same name is never
// hit. It never blocks; the deletion runs in the source's loop and is retried until the API
// answers.
func (s *KubeSource) PodTerminated(pod *v1.Pod) {
	if pod.Annotations[AnnotationConfigSource] != SourceKube || pod.DeletionTimestamp == nil {
		return
	}
	s.mu.Lock()
	s.deleting[pod.UID] = pod
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *KubeSource) finishDeletions(ctx context.Context) {
	s.mu.Lock()
	pending := make([]*v1.Pod, 0, len(s.deleting))
	for _, p := range s.deleting {
		pending = append(pending, p)
	}
	s.mu.Unlock()
	for _, p := range pending {
		zero := int64(0)
		uid := p.UID
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.cfg.Client.CoreV1().Pods(p.Namespace).Delete(cctx, p.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &uid},
		})
		cancel()
		l := s.log.WithFields(logrus.Fields{"pod": p.Namespace + "/" + p.Name, "uid": p.UID})
		switch {
		case err == nil:
			l.Info("pod terminated; deleted from the API server")
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone already, or the name now belongs to another pod: nothing of ours to delete.
		default:
			l.WithError(err).Warn("deleting the terminated pod from the API server failed; retrying")
			continue
		}
		s.mu.Lock()
		delete(s.deleting, p.UID)
		s.mu.Unlock()
	}
}
