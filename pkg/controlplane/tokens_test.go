package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient/kubeclienttest"
)

// tokenRequest is one TokenRequest the fake API server served.
type tokenRequest struct {
	namespace, serviceAccount string
	spec                      authenticationv1.TokenRequestSpec
}

// tokensHarness is a Tokens on a fake clientset whose TokenRequest endpoint issues
// "tok-<n>", valid from the fake clock's now for the requested lifetime (or serverTTL).
type tokensHarness struct {
	clock   *testingclock.FakeClock
	tokens  *Tokens
	changes chan struct{}
	logs    *logtest.Hook

	mu        sync.Mutex
	requests  []tokenRequest
	serverTTL time.Duration // when set, the lifetime the server gives instead of the asked one
	fail      error         // when set, every request fails with it
}

func newTokensHarness(t *testing.T) *tokensHarness {
	t.Helper()
	h := &tokensHarness{
		clock:   testingclock.NewFakeClock(time.Unix(1_700_000_000, 0)),
		changes: make(chan struct{}, 100),
	}
	client := fake.NewClientset()
	client.PrependReactor("create", "serviceaccounts", func(a clienttesting.Action) (bool, runtime.Object, error) {
		ca := a.(clienttesting.CreateActionImpl)
		if ca.GetSubresource() != "token" {
			return false, nil, nil
		}
		req := ca.GetObject().(*authenticationv1.TokenRequest)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.fail != nil {
			return true, nil, h.fail
		}
		h.requests = append(h.requests, tokenRequest{namespace: a.GetNamespace(), serviceAccount: ca.Name, spec: *req.Spec.DeepCopy()})
		ttl := time.Duration(*req.Spec.ExpirationSeconds) * time.Second
		if h.serverTTL != 0 {
			ttl = h.serverTTL
		}
		out := req.DeepCopy()
		secs := int64(ttl / time.Second)
		out.Spec.ExpirationSeconds = &secs
		out.Status = authenticationv1.TokenRequestStatus{
			Token:               fmt.Sprintf("tok-%d", len(h.requests)),
			ExpirationTimestamp: metav1.NewTime(h.clock.Now().Add(ttl)),
		}
		return true, out, nil
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	h.logs = logtest.NewLocal(log)
	tokens, err := NewTokens(TokensConfig{
		Client:        kubeclienttest.Wrap(client),
		Log:           logrus.NewEntry(log),
		OnChange:      func() { h.changes <- struct{}{} },
		Clock:         h.clock,
		RetryInterval: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.tokens = tokens
	return h
}

func (h *tokensHarness) setFail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = err
}

func (h *tokensHarness) requestCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.requests)
}

// token asks for pod's token of p and fails the test on error.
func (h *tokensHarness) token(t *testing.T, pod *v1.Pod, p *v1.ServiceAccountTokenProjection) string {
	t.Helper()
	tok, err := h.tokens.ServiceAccountToken(pod, p)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tokenPod(uid string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pod-" + uid, UID: k8stypes.UID("uid-" + uid)}}
}

func TestServiceAccountTokenRequestIsBoundToThePod(t *testing.T) {
	tests := []struct {
		name     string
		sa       string
		proj     v1.ServiceAccountTokenProjection
		wantSA   string
		wantAuds []string
		wantExp  int64
	}{
		{"defaults: default service account, server audience, one hour", "", v1.ServiceAccountTokenProjection{Path: "token"},
			"default", nil, 3600},
		{"kube-api-access", "builder", v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: tokenTTL(3607)},
			"builder", nil, 3607},
		{"an audience", "", v1.ServiceAccountTokenProjection{Path: "t", Audience: "vault", ExpirationSeconds: tokenTTL(600)},
			"default", []string{"vault"}, 600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTokensHarness(t)
			pod := tokenPod("a")
			pod.Spec.ServiceAccountName = tc.sa
			if tok := h.token(t, pod, &tc.proj); tok != "tok-1" {
				t.Fatalf("token = %q, want tok-1", tok)
			}
			r := h.requests[0]
			if r.namespace != "ns" || r.serviceAccount != tc.wantSA {
				t.Errorf("requested for service account %s/%s, want ns/%s", r.namespace, r.serviceAccount, tc.wantSA)
			}
			if !slices.Equal(r.spec.Audiences, tc.wantAuds) || *r.spec.ExpirationSeconds != tc.wantExp {
				t.Errorf("audiences %v, expiration %d; want %v, %d", r.spec.Audiences, *r.spec.ExpirationSeconds, tc.wantAuds, tc.wantExp)
			}
			want := authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
			if r.spec.BoundObjectRef == nil || *r.spec.BoundObjectRef != want {
				t.Errorf("bound to %+v, want %+v", r.spec.BoundObjectRef, want)
			}
		})
	}
}

func TestServiceAccountTokenIsCachedPerPodAudienceAndLifetime(t *testing.T) {
	h := newTokensHarness(t)
	a, b := tokenPod("a"), tokenPod("b")
	p := &v1.ServiceAccountTokenProjection{Path: "token"}
	first := h.token(t, a, p)
	if again := h.token(t, a, &v1.ServiceAccountTokenProjection{Path: "other/path"}); again != first {
		t.Errorf("same pod, audience and lifetime: token %q, want the cached %q", again, first)
	}
	for _, tc := range []struct {
		pod  *v1.Pod
		proj *v1.ServiceAccountTokenProjection
	}{
		{b, p},
		{a, &v1.ServiceAccountTokenProjection{Path: "token", Audience: "vault"}},
		{a, &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: tokenTTL(7200)}},
	} {
		if tok := h.token(t, tc.pod, tc.proj); tok == first {
			t.Errorf("pod %s, %+v: got the token of another key", tc.pod.Name, tc.proj)
		}
	}
	if n := h.requestCount(); n != 4 {
		t.Fatalf("requests = %d, want 4", n)
	}
}

func TestServiceAccountTokenRefreshesAtEightyPercentOr24Hours(t *testing.T) {
	tests := []struct {
		name      string
		asked     int64
		serverTTL time.Duration
		refreshAt time.Duration
	}{
		{"one hour: at 48 minutes", 3600, 0, 48 * time.Minute},
		{"ten minutes: at 8 minutes", 600, 0, 8 * time.Minute},
		{"a year-long kube-api-access token: at 24 hours", 3607, 365 * 24 * time.Hour, 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTokensHarness(t)
			h.serverTTL = tc.serverTTL
			pod, p := tokenPod("a"), &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &tc.asked}
			first := h.token(t, pod, p)
			h.clock.Step(tc.refreshAt - time.Second)
			if tok := h.token(t, pod, p); tok != first {
				t.Fatalf("a second before the refresh point: token %q, want the cached %q", tok, first)
			}
			h.clock.Step(time.Second)
			if tok := h.token(t, pod, p); tok == first {
				t.Fatal("at the refresh point: still the old token")
			}
		})
	}
}

func TestServiceAccountTokenKeepsTheOldTokenWhileRefreshFails(t *testing.T) {
	h := newTokensHarness(t)
	pod, p := tokenPod("a"), &v1.ServiceAccountTokenProjection{Path: "token"}
	first := h.token(t, pod, p)
	h.setFail(errors.New("connection refused"))
	h.clock.Step(50 * time.Minute) // due, not expired
	if tok := h.token(t, pod, p); tok != first {
		t.Fatalf("refresh failed before expiry: token %q, want the old %q", tok, first)
	}
	h.clock.Step(10 * time.Minute) // expired
	_, err := h.tokens.ServiceAccountToken(pod, p)
	if want := "request a token for service account ns/default: connection refused"; err == nil || err.Error() != want {
		t.Fatalf("after expiry error = %v, want %s", err, want)
	}

	// No token at all and the API fails: the error.
	if _, err := h.tokens.ServiceAccountToken(tokenPod("b"), p); err == nil {
		t.Fatal("a first request that failed returned no error")
	}
}

func TestTokenRefreshLoopRefreshesDueTokensAndCallsOnChange(t *testing.T) {
	h := newTokensHarness(t)
	ctx := context.Background()
	short := &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: tokenTTL(600)}
	long := &v1.ServiceAccountTokenProjection{Path: "token"}
	pod := tokenPod("a")
	tShort, tLong := h.token(t, pod, short), h.token(t, pod, long)

	// Nothing due: no request, and the loop wakes when the 10-minute token is due, or after a
	// minute at most.
	if wait := h.tokens.refreshDue(ctx); wait != time.Minute {
		t.Fatalf("wait = %v, want the loop's 1m cap", wait)
	}
	h.clock.Step(7*time.Minute + 30*time.Second)
	if wait := h.tokens.refreshDue(ctx); wait != 30*time.Second {
		t.Fatalf("wait = %v, want 30s until the 10-minute token is due", wait)
	}
	if len(h.changes) != 0 || h.requestCount() != 2 {
		t.Fatal("a pass with nothing due requested tokens or called OnChange")
	}

	h.clock.Step(30 * time.Second)
	h.tokens.refreshDue(ctx)
	if n := h.requestCount(); n != 3 {
		t.Fatalf("requests = %d, want 3: the due token refreshed", n)
	}
	if len(h.changes) != 1 {
		t.Fatalf("OnChange calls = %d, want 1", len(h.changes))
	}
	<-h.changes
	if tok := h.token(t, pod, short); tok == tShort || tok != "tok-3" {
		t.Fatalf("after the loop refreshed it the token is %q, want tok-3", tok)
	}
	if tok := h.token(t, pod, long); tok != tLong {
		t.Fatalf("the token not due changed: %q", tok)
	}
	if n := h.requestCount(); n != 3 {
		t.Fatalf("requests = %d, want 3: reads after a refresh are served from the cache", n)
	}
}

func TestTokenRefreshLoopDropsTokensNobodyReadSinceTheLastRefresh(t *testing.T) {
	h := newTokensHarness(t)
	ctx := context.Background()
	p := &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: tokenTTL(600)}
	h.token(t, tokenPod("a"), p)
	h.clock.Step(8 * time.Minute)
	h.tokens.refreshDue(ctx) // refreshed: the pod was using it
	<-h.changes
	h.clock.Step(8 * time.Minute)
	h.tokens.refreshDue(ctx) // not read since: its pod is gone
	if n := h.requestCount(); n != 2 {
		t.Fatalf("requests = %d, want 2: a token nobody read since its refresh is dropped", n)
	}
	if len(h.tokens.cache) != 0 {
		t.Fatalf("cache holds %d tokens, want 0", len(h.tokens.cache))
	}
}

func TestTokenRefreshLoopRetriesFailuresAndLogsOnce(t *testing.T) {
	h := newTokensHarness(t)
	ctx := context.Background()
	p := &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: tokenTTL(600)}
	pod := tokenPod("a")
	first := h.token(t, pod, p)
	h.setFail(errors.New("connection refused"))
	h.clock.Step(8 * time.Minute)
	for range 3 {
		if wait := h.tokens.refreshDue(ctx); wait != 10*time.Second {
			t.Fatalf("wait after a failed refresh = %v, want the 10s retry interval", wait)
		}
		h.clock.Step(10 * time.Second)
	}
	if tok := h.token(t, pod, p); tok != first {
		// ServiceAccountToken tries too, fails, and serves the old one.
		t.Fatalf("token = %q, want the old %q while it is valid", tok, first)
	}
	h.setFail(nil)
	h.tokens.refreshDue(ctx)
	<-h.changes
	if tok := h.token(t, pod, p); tok == first {
		t.Fatal("the token was not replaced once the API answered again")
	}
	var warns, infos int
	for _, e := range h.logs.AllEntries() {
		switch e.Level {
		case logrus.WarnLevel:
			warns++
		case logrus.InfoLevel:
			infos++
		}
	}
	if warns != 1 || infos != 1 {
		t.Fatalf("warnings %d, infos %d; want 1 and 1", warns, infos)
	}

	// Failing until it expires: dropped, so the next read asks afresh (and fails).
	h.setFail(errors.New("connection refused"))
	h.clock.Step(10 * time.Minute)
	h.tokens.refreshDue(ctx)
	if len(h.tokens.cache) != 0 {
		t.Fatal("an expired token that cannot be refreshed is still cached")
	}
}

func TestTokensForgetAndTrack(t *testing.T) {
	h := newTokensHarness(t)
	p := &v1.ServiceAccountTokenProjection{Path: "token"}
	a, b, c := tokenPod("a"), tokenPod("b"), tokenPod("c")
	for _, pod := range []*v1.Pod{a, b, c} {
		h.token(t, pod, p)
	}
	h.tokens.Forget(a.UID)
	h.tokens.Track([]*v1.Pod{c})
	h.token(t, a, p)
	h.token(t, b, p)
	h.token(t, c, p)
	if n := h.requestCount(); n != 5 {
		t.Fatalf("requests = %d, want 5: a and b asked again after being forgotten, c cached", n)
	}
}

func TestTokenRunWakesForANewTokenAndRefreshesItWhenDue(t *testing.T) {
	h := newTokensHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.tokens.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	pod, p := tokenPod("a"), &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: tokenTTL(600)}
	h.token(t, pod, p)
	// Step the clock minute by minute (the loop's cap) as it waits, until the token is due.
	deadline := time.Now().Add(apiTestWait)
	for len(h.changes) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the loop did not refresh the token")
		}
		if h.clock.HasWaiters() {
			h.clock.Step(time.Minute)
		}
		time.Sleep(time.Millisecond)
	}
	if now := h.clock.Since(time.Unix(1_700_000_000, 0)); now < 8*time.Minute || now > 9*time.Minute {
		t.Fatalf("refreshed %v after issue, want at 8m (80%% of 10m)", now)
	}
	if n := h.requestCount(); n != 2 {
		t.Fatalf("requests = %d, want 2", n)
	}
}

func tokenTTL(seconds int64) *int64 { return &seconds }
