package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageStatus returns the image if the runtime has it, and (nil, nil) if it
// does not. CRI says an absent image is an empty answer, not an error; a
// NotFound answer is treated the same, so callers have one case to handle.
func (c *Client) ImageStatus(ctx context.Context, image *runtimeapi.ImageSpec) (*runtimeapi.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: image})
	if err != nil {
		err = translate("ImageStatus", image.GetImage(), err)
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return resp.GetImage(), nil
}

// PullImage pulls the image, with auth if it is not nil, and returns the
// image reference the runtime stored it under (on containerd, the image id,
// "sha256:..."). sandboxCfg is the config of the sandbox the image is pulled
// for; the runtime may use it (for example for its runtime class).
//
// The call's deadline is PullTimeout, not CallTimeout.
func (c *Client) PullImage(ctx context.Context, image *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.pullTimeout)
	defer cancel()
	resp, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{
		Image:         image,
		Auth:          auth,
		SandboxConfig: sandboxCfg,
	})
	if err != nil {
		return "", translate("PullImage", image.GetImage(), err)
	}
	return resp.GetImageRef(), nil
}

// ListImages lists the images matching filter (nil: all of them).
func (c *Client) ListImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.images.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: filter})
	if err != nil {
		return nil, translate("ListImages", "", err)
	}
	return resp.GetImages(), nil
}

// RemoveImage removes the image (and every tag of the same image). Removing
// an image that is already gone succeeds.
func (c *Client) RemoveImage(ctx context.Context, image *runtimeapi.ImageSpec) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	_, err := c.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: image})
	return translate("RemoveImage", image.GetImage(), err)
}
