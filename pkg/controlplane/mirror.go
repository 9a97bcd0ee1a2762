package controlplane

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// mirrorHash is the value of a static pod's mirror annotation: its config hash, which is
// also its UID (derived from the manifest's content), so an edited manifest gets a new
// mirror pod.
func mirrorHash(static *v1.Pod) string {
	if h := static.Annotations[AnnotationConfigHash]; h != "" {
		return h
	}
	return string(static.UID)
}

// mirrorRefusal says why NodeRestriction would refuse a mirror pod for static, "" if it
// would not: a node may not create pods that reference Secrets, ConfigMaps, persistent
// volume claims or a service account, since it could read them through the pod.
func mirrorRefusal(static *v1.Pod) string {
	for _, v := range static.Spec.Volumes {
		switch {
		case v.Secret != nil, v.ConfigMap != nil, v.PersistentVolumeClaim != nil, v.Projected != nil:
			return fmt.Sprintf("volume %q refers to API objects", v.Name)
		}
	}
	for _, c := range append(append([]v1.Container{}, static.Spec.InitContainers...), static.Spec.Containers...) {
		if len(c.EnvFrom) > 0 {
			return fmt.Sprintf("container %q uses envFrom", c.Name)
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && (e.ValueFrom.ConfigMapKeyRef != nil || e.ValueFrom.SecretKeyRef != nil) {
				return fmt.Sprintf("container %q takes env from a ConfigMap or Secret", c.Name)
			}
		}
	}
	if len(static.Spec.ImagePullSecrets) > 0 {
		return "it uses imagePullSecrets"
	}
	if sa := static.Spec.ServiceAccountName; sa != "" {
		return fmt.Sprintf("it names service account %q", sa)
	}
	return ""
}

// syncMirrors keeps one mirror pod per static pod the agent runs, and none for static pods
// it no longer runs. It only deletes pods that carry the mirror annotation, with their UID as
// precondition; an API pod that happens to have a static pod's name is left alone.
func (r *Reporter) syncMirrors(ctx context.Context, pods []*v1.Pod) error {
	nodeUID := types.UID("")
	if r.cfg.NodeUID != nil {
		nodeUID = r.cfg.NodeUID()
	}
	wanted := map[string]*v1.Pod{}
	for _, p := range pods {
		if p.Annotations[AnnotationConfigSource] == SourceFile {
			wanted[p.Namespace+"/"+p.Name] = p
		}
	}
	var firstErr error
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	// Mirror pods of static pods that are gone or changed.
	for _, api := range r.cfg.Source.Pods() {
		hash, isMirror := api.Annotations[AnnotationMirror]
		if !isMirror {
			continue
		}
		if st := wanted[api.Namespace+"/"+api.Name]; st != nil && mirrorHash(st) == hash && api.DeletionTimestamp == nil {
			continue
		}
		note(r.deleteMirror(ctx, api))
	}
	if nodeUID == "" {
		return firstErr
	}
	for key, st := range wanted {
		if api := r.cfg.Source.Pod(st.Namespace, st.Name); api != nil {
			if _, isMirror := api.Annotations[AnnotationMirror]; !isMirror {
				r.refuseMirror(st, fmt.Sprintf("an API pod named %s exists", key))
			}
			continue // a current mirror, or one being replaced
		}
		if why := mirrorRefusal(st); why != "" {
			r.refuseMirror(st, why)
			continue
		}
		note(r.createMirror(ctx, st, nodeUID))
	}
	return firstErr
}

func (r *Reporter) refuseMirror(static *v1.Pod, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.noMirror[static.UID] == why {
		return
	}
	r.noMirror[static.UID] = why
	r.log.WithFields(map[string]any{"pod": static.Namespace + "/" + static.Name, "reason": why}).
		Warn("static pod gets no mirror pod in the API server; it runs, but kubectl does not show it")
}

func (r *Reporter) createMirror(ctx context.Context, static *v1.Pod, nodeUID types.UID) error {
	controller := true
	mirror := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        static.Name,
			Namespace:   static.Namespace,
			Labels:      static.Labels,
			Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: r.cfg.NodeName, UID: nodeUID, Controller: &controller,
			}},
		},
		Spec: *static.Spec.DeepCopy(),
	}
	for k, v := range static.Annotations {
		mirror.Annotations[k] = v
	}
	mirror.Annotations[AnnotationMirror] = mirrorHash(static)
	mirror.Spec.NodeName = r.cfg.NodeName
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := r.cfg.Client.CoreV1().Pods(static.Namespace).Create(cctx, mirror, metav1.CreateOptions{})
	switch {
	case err == nil:
		r.log.WithField("pod", static.Namespace+"/"+static.Name).Info("mirror pod created")
		return nil
	case apierrors.IsAlreadyExists(err):
		return nil // the watch has not shown it yet
	default:
		return fmt.Errorf("create mirror pod %s/%s: %w", static.Namespace, static.Name, err)
	}
}

func (r *Reporter) deleteMirror(ctx context.Context, mirror *v1.Pod) error {
	zero := int64(0)
	uid := mirror.UID
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := r.cfg.Client.CoreV1().Pods(mirror.Namespace).Delete(cctx, mirror.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil:
		r.log.WithField("pod", mirror.Namespace+"/"+mirror.Name).Info("mirror pod deleted")
		return nil
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return nil
	default:
		return fmt.Errorf("delete mirror pod %s/%s: %w", mirror.Namespace, mirror.Name, err)
	}
}
