package nodeapi

import (
	"context"
	"net/url"
	"sync"

	"github.com/containerd/errdefs"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// fakeTokens knows tokens by value; err fails every review.
type fakeTokens struct {
	mu    sync.Mutex
	users map[string]authnv1.UserInfo
	err   error
	calls int
}

func (f *fakeTokens) Create(_ context.Context, r *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	out := r.DeepCopy()
	if u, ok := f.users[r.Spec.Token]; ok {
		out.Status = authnv1.TokenReviewStatus{Authenticated: true, User: u}
	} else {
		out.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
	}
	return out, nil
}

// fakeAccess allows what allow says and records every review.
type fakeAccess struct {
	mu      sync.Mutex
	allow   func(authzv1.SubjectAccessReviewSpec) bool
	err     error
	reviews []authzv1.SubjectAccessReviewSpec
}

func (f *fakeAccess) Create(_ context.Context, r *authzv1.SubjectAccessReview, _ metav1.CreateOptions) (*authzv1.SubjectAccessReview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reviews = append(f.reviews, r.Spec)
	if f.err != nil {
		return nil, f.err
	}
	out := r.DeepCopy()
	out.Status.Allowed = f.allow(r.Spec)
	if !out.Status.Allowed {
		out.Status.Reason = "no RBAC policy matched"
	}
	return out, nil
}

// fakeRuntime knows containers by ID; streaming calls return a URL and are recorded.
type fakeRuntime struct {
	mu         sync.Mutex
	containers map[string]*runtimeapi.ContainerStatus
	sandboxes  []*runtimeapi.PodSandbox
	execs      [][]string
	streamURL  string
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.containers[id]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	return &runtimeapi.ContainerStatusResponse{Status: st}, nil
}

func (f *fakeRuntime) ListPodSandbox(context.Context, *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	return f.sandboxes, nil
}

func (f *fakeRuntime) Exec(_ context.Context, id string, cmd []string, _ cri.StreamOptions) (*url.URL, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, append([]string{id}, cmd...))
	return url.Parse(f.streamURL)
}

func (f *fakeRuntime) Attach(context.Context, string, cri.StreamOptions) (*url.URL, error) {
	return url.Parse(f.streamURL)
}

func (f *fakeRuntime) PortForward(context.Context, string, []int32) (*url.URL, error) {
	return url.Parse(f.streamURL)
}
