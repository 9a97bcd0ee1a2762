package nodeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// AccessReviewer creates SubjectAccessReviews: client-go's
// Interface.AuthorizationV1().SubjectAccessReviews() is one.
type AccessReviewer interface {
	Create(ctx context.Context, review *authzv1.SubjectAccessReview, opts metav1.CreateOptions) (*authzv1.SubjectAccessReview, error)
}

// attributes are what a request asks of the node object: verb on nodes/<name>/<subresource>.
type attributes struct {
	Verb        string
	Subresource string
}

// requestAttributes maps a request to what it needs, as the kubelet's
// nodeAuthorizerAttributesGetter does (with KubeletFineGrainedAuthz, GA and locked on since
// Kubernetes 1.36). The request is allowed when any of the returned attributes is: /pods
// and /healthz first ask for their own subresource and fall back to "proxy", which has
// always granted them. Everything without a subresource of its own, /containerLogs,
// /exec, /attach and /portForward included, is "proxy".
func requestAttributes(r *http.Request) []attributes {
	verb := ""
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodGet:
		verb = "get"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	}
	p := r.URL.Path
	var subs []string
	switch {
	case isSubpath(p, "/pods"), isSubpath(p, "/runningpods"):
		subs = append(subs, "pods")
	case isSubpath(p, "/healthz"):
		subs = append(subs, "healthz")
	case isSubpath(p, "/configz"):
		subs = append(subs, "configz")
	}
	switch {
	case isSubpath(p, "/stats"):
		subs = append(subs, "stats")
	case isSubpath(p, "/metrics"):
		subs = append(subs, "metrics")
	case isSubpath(p, "/logs"):
		subs = append(subs, "log") // the name of the other log subresources (pods/log)
	case isSubpath(p, "/checkpoint"):
		subs = append(subs, "checkpoint")
	case isSubpath(p, "/statusz"):
		subs = append(subs, "statusz")
	case isSubpath(p, "/flagz"):
		subs = append(subs, "configz")
	default:
		subs = append(subs, "proxy")
	}
	out := make([]attributes, len(subs))
	for i, s := range subs {
		out[i] = attributes{Verb: verb, Subresource: s}
	}
	return out
}

// isSubpath: p is path or below it ("/stats" and "/stats/summary", not "/statsfoo").
func isSubpath(p, path string) bool {
	return p == path || strings.HasPrefix(p, path+"/")
}

// authorizer asks the API server whether a user may do something to this node.
type authorizer struct {
	node       string
	reviews    AccessReviewer
	allowedTTL time.Duration
	deniedTTL  time.Duration
	cache      *ttlCache[decision]
}

// decision is a SubjectAccessReview's outcome; reason is the API server's, if it gave one.
type decision struct {
	allowed bool
	reason  string
}

func newAuthorizer(node string, reviews AccessReviewer, allowedTTL, deniedTTL time.Duration, c clock.PassiveClock) *authorizer {
	return &authorizer{node: node, reviews: reviews, allowedTTL: allowedTTL, deniedTTL: deniedTTL, cache: newTTLCache[decision](c)}
}

// authorize decides one request: allowed when any attribute is. An error means the API
// server could not be asked (500); a denial is a decision, not an error.
func (a *authorizer) authorize(ctx context.Context, u *userInfo, attrs []attributes) (decision, error) {
	var last decision
	for _, at := range attrs {
		d, err := a.review(ctx, u, at)
		if err != nil {
			return decision{}, err
		}
		if d.allowed {
			return d, nil
		}
		last = d
	}
	return last, nil
}

func (a *authorizer) review(ctx context.Context, u *userInfo, at attributes) (decision, error) {
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		ResourceAttributes: &authzv1.ResourceAttributes{
			Verb:        at.Verb,
			Version:     "v1",
			Resource:    "nodes",
			Subresource: at.Subresource,
			Name:        a.node,
		},
		User:   u.Name,
		UID:    u.UID,
		Groups: u.Groups,
	}}
	if len(u.Extra) > 0 {
		sar.Spec.Extra = make(map[string]authzv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			sar.Spec.Extra[k] = v
		}
	}
	key := cacheKey(sar.Spec)
	if d, ok := a.cache.get(key); ok {
		return d, nil
	}
	resp, err := a.reviews.Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("SubjectAccessReview for %s %s nodes/%s: %w", u.Name, at.Verb, at.Subresource, err)
	}
	d := decision{allowed: resp.Status.Allowed && !resp.Status.Denied, reason: resp.Status.Reason}
	ttl := a.deniedTTL
	if d.allowed {
		ttl = a.allowedTTL
	}
	a.cache.set(key, d, ttl)
	return d, nil
}

// cacheKey is a stable encoding of the review's spec (JSON orders map keys; groups are
// sorted on a copy so their order does not split the cache).
func cacheKey(spec authzv1.SubjectAccessReviewSpec) string {
	spec.Groups = append([]string(nil), spec.Groups...)
	sort.Strings(spec.Groups)
	b, _ := json.Marshal(spec) // cannot fail: plain strings and maps of strings
	return string(b)
}

// forbiddenMessage is the 403 body, in the kubelet's words.
func forbiddenMessage(u *userInfo, attrs []attributes) string {
	subs := make([]string, len(attrs))
	for i, a := range attrs {
		subs[i] = a.Subresource
	}
	return fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource(s)=[%s])", u.Name, attrs[0].Verb, strings.Join(subs, " "))
}
