package podmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/controlplane"
)

// Image waiting reasons as the kubelet spells them.
const (
	reasonErrImagePull      = "ErrImagePull"
	reasonImagePullBackOff  = "ImagePullBackOff"
	reasonErrImageNeverPull = "ErrImageNeverPull"
	reasonImageInspectError = "ImageInspectError"
)

// errImageNeverPull is the timeline's error for an absent image that may not be pulled.
var errImageNeverPull = errors.New("image not present and imagePullPolicy is Never")

// pullErrorShown is how long a failed pull shows as ErrImagePull before ImagePullBackOff.
const pullErrorShown = time.Second

// ensureImage applies c's imagePullPolicy and returns the image reference to create the
// container from, or why it cannot be had. present is the image's status when it was
// already there (nil after a pull). Sources default the policy (`:latest` or no tag means
// Always); an empty one is treated as IfNotPresent.
func (w *worker) ensureImage(ctx context.Context, pod *v1.Pod, c *v1.Container, sbCfg *runtimeapi.PodSandboxConfig, again requeue) (ref string, present *runtimeapi.Image, waiting *v1.ContainerStateWaiting) {
	spec := &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Image}
	log := w.log.WithFields(logrus.Fields{"container": c.Name, "image": c.Image})
	stepStart := w.stepStart()
	img, err := w.m.images.ImageStatus(ctx, spec)
	if err != nil {
		w.step(StepImage, c.Name, "", stepStart, err)
		again(runtimeRetry)
		return "", nil, &v1.ContainerStateWaiting{Reason: reasonImageInspectError, Message: fmt.Sprintf("Failed to inspect image %q: %v", c.Image, err)}
	}
	if img != nil && c.ImagePullPolicy != v1.PullAlways {
		w.step(StepImage, c.Name, "present", stepStart, nil)
		w.event(pod, v1.EventTypeNormal, eventPulled, fmt.Sprintf("Container image %q already present on machine", c.Image))
		return img.Id, img, nil
	}
	if c.ImagePullPolicy == v1.PullNever {
		w.step(StepImage, c.Name, "", stepStart, errImageNeverPull)
		return "", nil, &v1.ContainerStateWaiting{
			Reason:  reasonErrImageNeverPull,
			Message: fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image),
		}
	}
	key := "image/" + c.Image
	if rem := w.backoff.Remaining(key); rem > 0 {
		again(rem)
		return "", nil, &v1.ContainerStateWaiting{Reason: reasonImagePullBackOff, Message: fmt.Sprintf("Back-off pulling image %q", c.Image)}
	}
	log.Info("pulling image")
	w.event(pod, v1.EventTypeNormal, eventPulling, fmt.Sprintf("Pulling image %q", c.Image))
	start := w.m.cfg.Clock.Now()
	// With credentials from imagePullSecrets, each matching one is tried in turn, as the
	// kubelet does; without any, the pull is anonymous.
	auths := w.pullAuths(pod, c.Image)
	if len(auths) == 0 {
		auths = []*runtimeapi.AuthConfig{nil}
	}
	for _, auth := range auths {
		if ref, err = w.m.images.PullImage(ctx, spec, auth, sbCfg); err == nil {
			break
		}
	}
	if err != nil {
		w.step(StepImage, c.Name, "pull", stepStart, err)
		wait := w.backoff.Failed(key)
		log.WithError(err).WithField("retryIn", wait).Warn("image pull failed")
		// Look again soon, not only when the wait is over: that pass reports the wait as
		// ImagePullBackOff, as the kubelet's next sync does, instead of ErrImagePull throughout.
		again(min(wait, pullErrorShown))
		return "", nil, &v1.ContainerStateWaiting{Reason: reasonErrImagePull, Message: fmt.Sprintf("Failed to pull image %q: %v", c.Image, err)}
	}
	w.backoff.Forget(key)
	w.step(StepImage, c.Name, "pulled", stepStart, nil)
	took := w.m.cfg.Clock.Since(start)
	log.WithField("duration", took.String()).Info("image pulled")
	w.event(pod, v1.EventTypeNormal, eventPulled, fmt.Sprintf("Successfully pulled image %q in %s", c.Image, took.Round(time.Millisecond)))
	return ref, nil, nil
}

// pullAuths returns the credentials of the pod's imagePullSecrets that match image's
// registry, in order. A secret that is missing or unreadable is logged and skipped, as the
// kubelet does: the pull may still work anonymously.
func (w *worker) pullAuths(pod *v1.Pod, image string) []*runtimeapi.AuthConfig {
	var out []*runtimeapi.AuthConfig
	for _, ref := range pod.Spec.ImagePullSecrets {
		log := w.log.WithField("secret", ref.Name)
		sec, err := w.m.cfg.Configs.GetSecret(pod.Namespace, ref.Name)
		if err != nil {
			log.WithError(err).Warn("image pull secret not usable; pulling without it")
			continue
		}
		auths, err := controlplane.PullAuths(sec)
		if err != nil {
			log.WithError(err).Warn("image pull secret not usable; pulling without it")
			continue
		}
		if a, ok := controlplane.MatchAuth(auths, image); ok {
			// ServerAddress stays empty: containerd takes the registry from the image.
			out = append(out, &runtimeapi.AuthConfig{
				Username: a.Username, Password: a.Password, Auth: a.Auth,
				IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
			})
		}
	}
	return out
}
