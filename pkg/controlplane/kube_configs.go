package controlplane

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
)

// KubeConfigsConfig configures NewKubeConfigs.
type KubeConfigsConfig struct {
	// Client talks to the API server with the node's own credentials (required). Under the
	// Node authorizer those let it get, list and watch (by metadata.name) only the ConfigMaps
	// and Secrets that pods bound to the node reference.
	Client kubeclient.Interface
	// Log is the logger (required).
	Log *logrus.Entry
	// OnChange is called, from a watch goroutine, when a watched object was created, changed
	// or deleted (optional). It must not block for long: the pod manager's ConfigChanged only
	// wakes workers.
	OnChange func()
	// Clock times the backoff between failed lists and watches. Default: the real clock.
	Clock clock.Clock
	// BackoffInitial and BackoffMax bound the wait after a failed list or watch, which
	// doubles from BackoffInitial up to BackoffMax (with up to 20% jitter on top) and starts
	// over once a watch is accepted. Defaults 1 s and 60 s.
	BackoffInitial, BackoffMax time.Duration
	// RequestTimeout bounds each GET of a lookup and each LIST of a watch. Default 10 s.
	RequestTimeout time.Duration
}

// KubeConfigs serves the ConfigMaps and Secrets of the API server to the volume and
// environment code (it has the methods of volume.ConfigSource and podmanager.ConfigSource),
// as the kubelet's watch-based managers do: it watches exactly the objects the node's pods
// reference, one list+watch per object with fieldSelector metadata.name=<name> in its
// namespace, since that is all the Node authorizer lets a node do.
//
//	Track(pods) ─> referenced refs ─┬─ new ref:  objectWatch, started if Run runs
//	                                └─ gone ref: cancelled, dropped (lookups GET again)
//	objectWatch: LIST name=<n> ─> store ─> WATCH from rv ─> events ─> store ─> OnChange
//	                 ▲ backoff on error; relist when the rv expired ┘
//
// Contract:
//   - Track(pods) sets what is watched: the objects the given pods reference. It never blocks
//     on the API server and may be called at any time, before Run too.
//   - Run(ctx) runs the watches of the tracked objects until ctx is done, then stops them and
//     returns once they have ended. Only one Run at a time; lookups work with or without it.
//   - GetConfigMap and GetSecret answer from a watch's copy once that watch has listed the
//     object; before that, and for objects no tracked pod references, they GET it from the
//     API server (no watch is started for it). Absent objects are errors of class
//     errdefs.ErrNotFound worded as the kubelet's (`configmap "x" not found`); anything else
//     the API server answers (Forbidden, unreachable) is returned as is, wrapped.
//   - While the API server is unreachable a synced watch keeps serving its last copy, so
//     running pods keep their configuration; the watch retries with backoff and logs each
//     distinct error once.
type KubeConfigs struct {
	cfg KubeConfigsConfig
	log *logrus.Entry

	mu      sync.Mutex
	objects map[objectRef]*objectWatch // guarded by mu: the tracked objects
	runCtx  context.Context            // guarded by mu: Run's context while it runs, else nil
	wg      sync.WaitGroup             // the watch goroutines Run waits for; Add under mu
}

// objectRef names one ConfigMap or Secret.
type objectRef struct {
	kind      string // refConfigMap or refSecret: the kubelet's word in "not found" messages
	namespace string
	name      string
}

const (
	refConfigMap = "configmap"
	refSecret    = "secret"
)

// objectWatch is the watch of one tracked object.
type objectWatch struct {
	ref objectRef
	// guarded by KubeConfigs.mu:
	ctx    context.Context // the running watch's context; nil while not started
	cancel context.CancelFunc
	synced bool           // a list has answered; obj is the object as the API has it
	obj    runtime.Object // *v1.ConfigMap or *v1.Secret, never modified; nil when absent
}

// NewKubeConfigs checks cfg and returns a KubeConfigs tracking nothing yet.
func NewKubeConfigs(cfg KubeConfigsConfig) (*KubeConfigs, error) {
	if cfg.Client == nil || cfg.Log == nil {
		return nil, errors.New("kube configs: Client and Log are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 60 * time.Second
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffInitial)
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	return &KubeConfigs{
		cfg:     cfg,
		log:     cfg.Log.WithField("source", SourceKube),
		objects: map[objectRef]*objectWatch{},
	}, nil
}

// GetConfigMap returns the ConfigMap namespace/name (a copy the caller may keep). When the
// API server has none, the error is of class errdefs.ErrNotFound and reads as the kubelet's:
// `configmap "name" not found`.
func (k *KubeConfigs) GetConfigMap(namespace, name string) (*v1.ConfigMap, error) {
	obj, err := k.lookup(objectRef{kind: refConfigMap, namespace: namespace, name: name})
	if err != nil {
		return nil, err
	}
	return obj.(*v1.ConfigMap).DeepCopy(), nil
}

// GetSecret returns the Secret namespace/name (a copy the caller may keep). When the API
// server has none, the error is of class errdefs.ErrNotFound and reads as the kubelet's:
// `secret "name" not found`.
func (k *KubeConfigs) GetSecret(namespace, name string) (*v1.Secret, error) {
	obj, err := k.lookup(objectRef{kind: refSecret, namespace: namespace, name: name})
	if err != nil {
		return nil, err
	}
	return obj.(*v1.Secret).DeepCopy(), nil
}

func (k *KubeConfigs) lookup(ref objectRef) (runtime.Object, error) {
	k.mu.Lock()
	if w := k.objects[ref]; w != nil && w.synced {
		obj := w.obj
		k.mu.Unlock()
		if obj == nil {
			return nil, notFoundError(ref)
		}
		return obj, nil
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.RequestTimeout)
	defer cancel()
	obj, err := k.get(ctx, ref)
	if apierrors.IsNotFound(err) {
		return nil, notFoundError(ref)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s: %w", ref.kind, ref.namespace, ref.name, err)
	}
	return obj, nil
}

// notFoundError is the kubelet's error for an absent object: `configmap "x" not found`, where
// the API server itself says `configmaps "x" not found`.
func notFoundError(ref objectRef) error {
	return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("%s %q not found", ref.kind, ref.name))
}

// Track makes the tracked objects exactly those pods reference (volumes and projected
// sources, env valueFrom, envFrom, imagePullSecrets): watches of new ones start (when Run
// runs), watches of ones no pod references any more stop. It does not block on the API.
func (k *KubeConfigs) Track(pods []*v1.Pod) {
	want := map[objectRef]bool{}
	for _, pod := range pods {
		for _, ref := range referencedConfigs(pod) {
			want[ref] = true
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for ref, w := range k.objects {
		if !want[ref] {
			if w.cancel != nil {
				w.cancel()
			}
			delete(k.objects, ref)
		}
	}
	for ref := range want {
		if _, ok := k.objects[ref]; ok {
			continue
		}
		w := &objectWatch{ref: ref}
		k.objects[ref] = w
		if k.runCtx != nil {
			k.startLocked(w)
		}
	}
}

// Run runs the watches of the tracked objects (and of those tracked later) until ctx is done;
// it then stops them all and returns when they have ended. Lookups then GET from the API.
func (k *KubeConfigs) Run(ctx context.Context) {
	k.mu.Lock()
	if k.runCtx != nil {
		k.mu.Unlock()
		panic("controlplane: KubeConfigs.Run called while it runs")
	}
	k.runCtx = ctx
	for _, w := range k.objects {
		k.startLocked(w)
	}
	k.mu.Unlock()

	<-ctx.Done()

	k.mu.Lock()
	k.runCtx = nil
	for _, w := range k.objects {
		if w.cancel != nil {
			w.cancel()
		}
		// A stopped watch's copy would go stale: lookups GET again until the next Run.
		w.ctx, w.cancel, w.synced, w.obj = nil, nil, false, nil
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// startLocked starts w's watch under Run's context. k.mu must be held and Run running.
func (k *KubeConfigs) startLocked(w *objectWatch) {
	w.ctx, w.cancel = context.WithCancel(k.runCtx)
	ctx := w.ctx
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		k.runWatch(ctx, w)
	}()
}

// runWatch keeps w's copy of its object current until ctx is done: list, then watch from the
// list's resourceVersion, re-watching from the last version seen when the server ends a watch
// and listing again when that version has expired. Failures back off and are logged once per
// distinct error.
func (k *KubeConfigs) runWatch(ctx context.Context, w *objectWatch) {
	log := k.log.WithFields(logrus.Fields{"kind": w.ref.kind, "namespace": w.ref.namespace, "name": w.ref.name})
	var (
		rv       string
		listed   bool
		failures int
		lastErr  string // the last error logged, so a repeated one is not logged again
	)
	failed := func(err error) {
		if msg := err.Error(); msg != lastErr {
			log.WithError(err).Warn("watching a configuration object failed; retrying with backoff")
			lastErr = msg
		}
		d := k.backoff(failures)
		failures++
		select {
		case <-ctx.Done():
		case <-k.cfg.Clock.After(d):
		}
	}
	for ctx.Err() == nil {
		if !listed {
			obj, listRV, err := k.list(ctx, w.ref)
			if err != nil {
				if ctx.Err() == nil {
					failed(err)
				}
				continue
			}
			k.store(w, obj)
			rv, listed = listRV, true
		}
		wi, err := k.watch(ctx, w.ref, rv)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isExpired(err) {
				listed = false
				continue
			}
			failed(err)
			continue
		}
		if lastErr != "" {
			log.Info("watching a configuration object works again")
			lastErr = ""
		}
		failures = 0
		rv, err = k.consume(ctx, w, wi, rv)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			// The server ended the watch (its timeout): watch again from rv.
		case isExpired(err):
			listed = false
		default:
			failed(err)
		}
	}
}

// backoff is the wait after the failures+1'th failure in a row.
func (k *KubeConfigs) backoff(failures int) time.Duration {
	d := k.cfg.BackoffInitial
	for i := 0; i < failures && d < k.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, k.cfg.BackoffMax)
	return d + time.Duration(rand.Float64()*0.2*float64(d))
}

// isExpired is the API's "that resourceVersion is too old": list again.
func isExpired(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// consume applies wi's events to w until the watch ends, and returns the last
// resourceVersion seen: nil error when the server closed the watch, the server's error when it
// sent one. Events about other objects are ignored: the field selector should keep them away,
// and a copy must never be replaced by another object.
func (k *KubeConfigs) consume(ctx context.Context, w *objectWatch, wi watch.Interface, rv string) (string, error) {
	defer wi.Stop()
	for {
		select {
		case <-ctx.Done():
			return rv, ctx.Err()
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return rv, nil
			}
			if ev.Type == watch.Error {
				return rv, apierrors.FromObject(ev.Object)
			}
			m, err := meta.Accessor(ev.Object)
			if err != nil {
				continue
			}
			if ev.Type == watch.Bookmark {
				rv = m.GetResourceVersion()
				continue
			}
			if m.GetName() != w.ref.name || m.GetNamespace() != w.ref.namespace {
				continue
			}
			rv = m.GetResourceVersion()
			switch ev.Type {
			case watch.Added, watch.Modified:
				k.store(w, ev.Object)
			case watch.Deleted:
				k.store(w, nil)
			}
		}
	}
}

// store makes obj (nil: absent) w's copy and calls OnChange when that is news: the first
// copy of an object that exists, or a copy of another UID or resourceVersion than the last.
// A watch no longer running (untracked, or Run ended) stores nothing.
func (k *KubeConfigs) store(w *objectWatch, obj runtime.Object) {
	k.mu.Lock()
	if w.ctx == nil || w.ctx.Err() != nil {
		k.mu.Unlock()
		return
	}
	changed := objectVersion(obj) != objectVersion(w.obj)
	if !w.synced {
		changed = obj != nil
	}
	w.synced, w.obj = true, obj
	k.mu.Unlock()
	if changed && k.cfg.OnChange != nil {
		k.cfg.OnChange()
	}
}

// objectVersion identifies one version of an object; "" for none.
func objectVersion(obj runtime.Object) string {
	if obj == nil {
		return ""
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return string(m.GetUID()) + "/" + m.GetResourceVersion()
}

// get fetches ref from the API server.
func (k *KubeConfigs) get(ctx context.Context, ref objectRef) (runtime.Object, error) {
	if ref.kind == refSecret {
		return k.cfg.Client.CoreV1().Secrets(ref.namespace).Get(ctx, ref.name, metav1.GetOptions{})
	}
	return k.cfg.Client.CoreV1().ConfigMaps(ref.namespace).Get(ctx, ref.name, metav1.GetOptions{})
}

// nameSelector is the only list or watch the Node authorizer lets a node make.
func nameSelector(ref objectRef) string {
	return fields.OneTermEqualSelector("metadata.name", ref.name).String()
}

// list fetches ref by a list with its name as field selector: the object (nil when absent)
// and the list's resourceVersion, to watch from.
func (k *KubeConfigs) list(ctx context.Context, ref objectRef) (runtime.Object, string, error) {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
	defer cancel()
	opts := metav1.ListOptions{FieldSelector: nameSelector(ref)}
	if ref.kind == refSecret {
		l, err := k.cfg.Client.CoreV1().Secrets(ref.namespace).List(ctx, opts)
		if err != nil {
			return nil, "", fmt.Errorf("list secret %s/%s: %w", ref.namespace, ref.name, err)
		}
		for i := range l.Items {
			if l.Items[i].Name == ref.name {
				return &l.Items[i], l.ResourceVersion, nil
			}
		}
		return nil, l.ResourceVersion, nil
	}
	l, err := k.cfg.Client.CoreV1().ConfigMaps(ref.namespace).List(ctx, opts)
	if err != nil {
		return nil, "", fmt.Errorf("list configmap %s/%s: %w", ref.namespace, ref.name, err)
	}
	for i := range l.Items {
		if l.Items[i].Name == ref.name {
			return &l.Items[i], l.ResourceVersion, nil
		}
	}
	return nil, l.ResourceVersion, nil
}

// watch opens a watch of ref from rv. The server ends it after 5 to 10 minutes (spread so
// that many watches do not all come back at once), as client-go's reflector asks.
func (k *KubeConfigs) watch(ctx context.Context, ref objectRef, rv string) (watch.Interface, error) {
	timeout := int64(300 + rand.IntN(300))
	opts := metav1.ListOptions{
		FieldSelector:       nameSelector(ref),
		ResourceVersion:     rv,
		AllowWatchBookmarks: true,
		TimeoutSeconds:      &timeout,
	}
	var (
		wi  watch.Interface
		err error
	)
	if ref.kind == refSecret {
		wi, err = k.cfg.Client.CoreV1().Secrets(ref.namespace).Watch(ctx, opts)
	} else {
		wi, err = k.cfg.Client.CoreV1().ConfigMaps(ref.namespace).Watch(ctx, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("watch %s %s/%s: %w", ref.kind, ref.namespace, ref.name, err)
	}
	return wi, nil
}

// referencedConfigs lists the ConfigMaps and Secrets pod references in the fields the agent
// reads: volumes (configMap, secret, and projected configMap and secret sources), env
// valueFrom and envFrom of every container, and imagePullSecrets. Duplicates are harmless.
func referencedConfigs(pod *v1.Pod) []objectRef {
	var refs []objectRef
	add := func(kind, name string) {
		if name != "" {
			refs = append(refs, objectRef{kind: kind, namespace: pod.Namespace, name: name})
		}
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		add(refSecret, s.Name)
	}
	for i := range pod.Spec.Volumes {
		src := &pod.Spec.Volumes[i].VolumeSource
		switch {
		case src.ConfigMap != nil:
			add(refConfigMap, src.ConfigMap.Name)
		case src.Secret != nil:
			add(refSecret, src.Secret.SecretName)
		case src.Projected != nil:
			for _, p := range src.Projected.Sources {
				if p.ConfigMap != nil {
					add(refConfigMap, p.ConfigMap.Name)
				}
				if p.Secret != nil {
					add(refSecret, p.Secret.Name)
				}
			}
		}
	}
	envRefs := func(env []v1.EnvVar, envFrom []v1.EnvFromSource) {
		for _, e := range envFrom {
			if e.ConfigMapRef != nil {
				add(refConfigMap, e.ConfigMapRef.Name)
			}
			if e.SecretRef != nil {
				add(refSecret, e.SecretRef.Name)
			}
		}
		for _, e := range env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(refConfigMap, r.Name)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(refSecret, r.Name)
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		envRefs(pod.Spec.InitContainers[i].Env, pod.Spec.InitContainers[i].EnvFrom)
	}
	for i := range pod.Spec.Containers {
		envRefs(pod.Spec.Containers[i].Env, pod.Spec.Containers[i].EnvFrom)
	}
	for i := range pod.Spec.EphemeralContainers {
		c := &pod.Spec.EphemeralContainers[i].EphemeralContainerCommon
		envRefs(c.Env, c.EnvFrom)
	}
	return refs
}
