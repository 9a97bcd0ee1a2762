package kubeclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// TestRequestsGoWhereTheGeneratedClientsSendThem pins the method and path of each call the
// agent makes, as kube-apiserver (and its Node authorizer) expects them.
func TestRequestsGoWhereTheGeneratedClientsSendThem(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		// An empty object of any kind decodes into whatever the client asked for.
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{})
	}))
	defer srv.Close()
	c, err := New(&rest.Config{Host: srv.URL, QPS: 100, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := []struct {
		want string
		call func() error
	}{
		{"GET /api/v1/pods?fieldSelector=spec.nodeName%3Dn1", func() error {
			_, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"})
			return err
		}},
		{"PATCH /api/v1/namespaces/ns/pods/p/status?", func() error {
			_, err := c.CoreV1().Pods("ns").Patch(ctx, "p", types.StrategicMergePatchType, []byte("{}"), metav1.PatchOptions{}, "status")
			return err
		}},
		{"DELETE /api/v1/namespaces/ns/pods/p?", func() error {
			return c.CoreV1().Pods("ns").Delete(ctx, "p", metav1.DeleteOptions{})
		}},
		{"POST /api/v1/namespaces/ns/pods?", func() error {
			_, err := c.CoreV1().Pods("ns").Create(ctx, &corev1.Pod{}, metav1.CreateOptions{})
			return err
		}},
		{"GET /api/v1/nodes/n1?", func() error {
			_, err := c.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
			return err
		}},
		{"PATCH /api/v1/nodes/n1/status?", func() error {
			_, err := c.CoreV1().Nodes().Patch(ctx, "n1", types.StrategicMergePatchType, []byte("{}"), metav1.PatchOptions{}, "status")
			return err
		}},
		{"POST /api/v1/namespaces/ns/events?", func() error {
			_, err := c.CoreV1().Events("ns").Create(ctx, &corev1.Event{}, metav1.CreateOptions{})
			return err
		}},
		{"GET /api/v1/namespaces/ns/secrets?fieldSelector=metadata.name%3Ds&watch=true", func() error {
			w, err := c.CoreV1().Secrets("ns").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=s"})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"GET /api/v1/namespaces/ns/configmaps/cm?", func() error {
			_, err := c.CoreV1().ConfigMaps("ns").Get(ctx, "cm", metav1.GetOptions{})
			return err
		}},
		{"POST /api/v1/namespaces/ns/serviceaccounts/sa/token?", func() error {
			_, err := c.CoreV1().ServiceAccounts("ns").CreateToken(ctx, "sa", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},
		{"PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1?", func() error {
			_, err := c.CoordinationV1().Leases("kube-node-lease").Update(ctx,
				&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.UpdateOptions{})
			return err
		}},
		{"POST /apis/authentication.k8s.io/v1/tokenreviews?", func() error {
			_, err := c.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{}, metav1.CreateOptions{})
			return err
		}},
		{"POST /apis/authorization.k8s.io/v1/subjectaccessreviews?", func() error {
			_, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, tc := range calls {
		mu.Lock()
		seen = nil
		mu.Unlock()
		if err := tc.call(); err != nil {
			t.Errorf("%s: %v", tc.want, err)
			continue
		}
		mu.Lock()
		if len(seen) != 1 || seen[0] != tc.want {
			t.Errorf("want one request %q, got %q", tc.want, seen)
		}
		mu.Unlock()
	}
}

// TestSchemeHasOnlyTheGroupsUsed is the point of this package: the scheme must not grow into
// client-go's all-groups one.
func TestSchemeHasOnlyTheGroupsUsed(t *testing.T) {
	groups := map[string]bool{}
	for gvk := range Scheme.AllKnownTypes() {
		groups[gvk.Group] = true
	}
	for g := range groups {
		switch g {
		case "", "coordination.k8s.io", "authentication.k8s.io", "authorization.k8s.io":
		default:
			t.Errorf("scheme registers group %q", g)
		}
	}
}
