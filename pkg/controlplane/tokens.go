package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient"
)

const (
	// defaultTokenExpiration is the API's default of serviceAccountToken expirationSeconds.
	defaultTokenExpiration int64 = 3600
	// tokenMaxAge is the kubelet's cap on a token's age before it is refreshed, whatever
	// its lifetime (the API server may issue year-long tokens for kube-api-access volumes).
	tokenMaxAge = 24 * time.Hour
	// tokenLoopMaxWait bounds how long the refresh loop sleeps without looking.
	tokenLoopMaxWait = time.Minute
	// tokenLoopMinWait keeps the loop from spinning on a token that is due as soon as it is
	// issued (a node clock far ahead of the API server's).
	tokenLoopMinWait = time.Second
)

// TokensConfig configures NewTokens.
type TokensConfig struct {
	// Client talks to the API server with the node's own credentials (required): the Node
	// authorizer lets it request tokens only for the service accounts of its pods, bound to
	// those pods.
	Client kubeclient.Interface
	// Log is the logger (required).
	Log *logrus.Entry
	// OnChange is called when the refresh loop has replaced tokens, so the projected volumes
	// holding them get rewritten (optional; the pod manager's ConfigChanged). It must not
	// block for long.
	OnChange func()
	// Clock decides when tokens are due. Default: the real clock.
	Clock clock.Clock
	// RetryInterval is the wait before the loop tries again after a failed refresh (the old
	// token is served meanwhile, while it is valid). Default 10 s.
	RetryInterval time.Duration
	// RequestTimeout bounds each TokenRequest. Default 10 s.
	RequestTimeout time.Duration
}

// Tokens issues the service-account tokens of pods' serviceAccountToken projections through
// the TokenRequest API (it has the method of volume.TokenSource), caches them and rotates
// them as the kubelet's token manager does: a token is replaced once 80% of its lifetime has
// passed or it is 24 hours old.
//
//	ServiceAccountToken ─> cache[uid, audience, expiration] ─ due? ─> CreateToken
//	Run: timer(next due) ─> refresh due tokens ─> OnChange ─> pods resync ─> ServiceAccountToken
//
// Contract:
//   - ServiceAccountToken returns the cached token while it is not due, else requests a new
//     one; when that fails it returns the old token while the old one is still valid.
//   - Run(ctx) runs the refresh loop until ctx is done: it replaces due tokens itself, then
//     calls OnChange so the volumes get the new ones before the old ones expire. A token that
//     nobody asked for since its last refresh is dropped instead of refreshed: its pod is
//     gone, or no longer syncs.
//   - Forget(uid) drops a pod's tokens; Track(pods) drops those of every pod not in pods.
type Tokens struct {
	cfg TokensConfig
	log *logrus.Entry

	mu    sync.Mutex
	cache map[tokenKey]*tokenEntry // guarded by mu; entries are replaced, never modified
	wake  chan struct{}            // capacity 1: a new token may be due before the loop's timer
}

// tokenKey is what makes two projections share a token: the pod, audience and lifetime.
type tokenKey struct {
	uid        types.UID
	audience   string
	expiration int64
}

// tokenEntry is a cached token and what it takes to request it again.
type tokenEntry struct {
	namespace, serviceAccount string
	spec                      authenticationv1.TokenRequestSpec
	issued                    *authenticationv1.TokenRequest // with Spec.ExpirationSeconds set
	// used says ServiceAccountToken handed this token out: the loop refreshes only tokens
	// used since their last refresh, so tokens of pods that are gone do not live on.
	used bool
	// retryAt is when the loop may try again after a failed refresh; zero when none failed.
	retryAt time.Time
}

// NewTokens checks cfg and returns a Tokens with an empty cache.
func NewTokens(cfg TokensConfig) (*Tokens, error) {
	if cfg.Client == nil || cfg.Log == nil {
		return nil, errors.New("tokens: Client and Log are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 10 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	return &Tokens{
		cfg:   cfg,
		log:   cfg.Log.WithField("source", SourceKube),
		cache: map[tokenKey]*tokenEntry{},
		wake:  make(chan struct{}, 1),
	}, nil
}

// ServiceAccountToken returns a token of pod's service account (spec.serviceAccountName,
// "default" when unset) for projection p: audience p.Audience (none: the API server's
// default), lifetime p.ExpirationSeconds (default one hour), bound to the pod.
func (t *Tokens) ServiceAccountToken(pod *v1.Pod, p *v1.ServiceAccountTokenProjection) (string, error) {
	exp := defaultTokenExpiration
	if p.ExpirationSeconds != nil {
		exp = *p.ExpirationSeconds
	}
	key := tokenKey{uid: pod.UID, audience: p.Audience, expiration: exp}
	now := t.cfg.Clock.Now()

	t.mu.Lock()
	old := t.cache[key]
	if old != nil && now.Before(refreshAt(old.issued)) {
		if !old.used {
			next := *old
			next.used = true
			t.cache[key] = &next
		}
		t.mu.Unlock()
		return old.issued.Status.Token, nil
	}
	t.mu.Unlock()

	e := &tokenEntry{namespace: pod.Namespace, serviceAccount: pod.Spec.ServiceAccountName, used: true}
	if e.serviceAccount == "" {
		e.serviceAccount = "default"
	}
	e.spec = authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}
	if p.Audience != "" {
		e.spec.Audiences = []string{p.Audience}
	}
	issued, err := t.request(context.Background(), e)
	if err != nil {
		if old != nil && now.Before(old.issued.Status.ExpirationTimestamp.Time) {
			// The refresh loop logs and retries; until then the old token still works.
			return old.issued.Status.Token, nil
		}
		return "", err
	}
	e.issued = issued
	t.mu.Lock()
	t.cache[key] = e
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return issued.Status.Token, nil
}

// Forget drops the tokens of pod uid: the pod is gone.
func (t *Tokens) Forget(uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.cache {
		if k.uid == uid {
			delete(t.cache, k)
		}
	}
}

// Track drops the tokens of every pod not in pods (the pods bound to the node now).
func (t *Tokens) Track(pods []*v1.Pod) {
	live := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		live[p.UID] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.cache {
		if !live[k.uid] {
			delete(t.cache, k)
		}
	}
}

// Run refreshes tokens before they are due until ctx is done.
func (t *Tokens) Run(ctx context.Context) {
	for ctx.Err() == nil {
		timer := t.cfg.Clock.NewTimer(t.refreshDue(ctx))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C():
		case <-t.wake:
			timer.Stop()
		}
	}
}

// refreshDue is one pass of the loop: it refreshes the tokens that are due (dropping those
// nobody used since their last refresh, and expired ones it cannot refresh), calls OnChange
// when it replaced any, and returns how long the loop may wait before the next pass.
func (t *Tokens) refreshDue(ctx context.Context) time.Duration {
	now := t.cfg.Clock.Now()
	due := map[tokenKey]*tokenEntry{}
	t.mu.Lock()
	for k, e := range t.cache {
		if now.Before(refreshAt(e.issued)) || now.Before(e.retryAt) {
			continue
		}
		if !e.used {
			delete(t.cache, k)
			continue
		}
		due[k] = e
	}
	t.mu.Unlock()

	refreshed := false
	for k, e := range due {
		if ctx.Err() != nil {
			break
		}
		log := t.log.WithFields(logrus.Fields{"pod": e.spec.BoundObjectRef.Name, "uid": k.uid,
			"serviceAccount": e.namespace + "/" + e.serviceAccount, "audience": k.audience})
		issued, err := t.request(ctx, e)
		if ctx.Err() != nil {
			break
		}
		next := *e
		if err != nil {
			expired := !now.Before(e.issued.Status.ExpirationTimestamp.Time)
			if e.retryAt.IsZero() || expired {
				// Logged once per token: the first failure, and when it ran out.
				log.WithError(err).WithField("expired", expired).Warn("refreshing a service account token failed")
			}
			if expired {
				t.replace(k, e, nil)
				continue
			}
			next.retryAt = now.Add(t.cfg.RetryInterval)
		} else {
			if !e.retryAt.IsZero() {
				log.Info("refreshing a service account token works again")
			}
			next.issued, next.used, next.retryAt = issued, false, time.Time{}
			refreshed = true
		}
		t.replace(k, e, &next)
	}
	if refreshed && t.cfg.OnChange != nil {
		t.cfg.OnChange()
	}

	wait := tokenLoopMaxWait
	t.mu.Lock()
	for _, e := range t.cache {
		at := refreshAt(e.issued)
		if e.retryAt.After(at) {
			at = e.retryAt
		}
		wait = min(wait, at.Sub(now))
	}
	t.mu.Unlock()
	return max(wait, tokenLoopMinWait)
}

// replace swaps the entry of k from old to next (nil: remove), unless it was forgotten or
// replaced (by ServiceAccountToken) meanwhile.
func (t *Tokens) replace(k tokenKey, old, next *tokenEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cache[k] != old {
		return
	}
	if next == nil {
		delete(t.cache, k)
		return
	}
	t.cache[k] = next
}

// request asks the API server for a token as e describes.
func (t *Tokens) request(ctx context.Context, e *tokenEntry) (*authenticationv1.TokenRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
	defer cancel()
	req := &authenticationv1.TokenRequest{Spec: *e.spec.DeepCopy()}
	tr, err := t.cfg.Client.CoreV1().ServiceAccounts(e.namespace).CreateToken(ctx, e.serviceAccount, req, metav1.CreateOptions{})
	if err == nil && (tr == nil || tr.Status.Token == "") {
		err = errors.New("the API server returned no token")
	}
	if err != nil {
		return nil, fmt.Errorf("request a token for service account %s/%s: %w", e.namespace, e.serviceAccount, err)
	}
	if tr.Spec.ExpirationSeconds == nil {
		// The server says how long the token lives; without that, what was asked.
		tr.Spec.ExpirationSeconds = e.spec.ExpirationSeconds
	}
	return tr, nil
}

// refreshAt is when tr is due for replacement: when 80% of its lifetime has passed, or when it
// is 24 hours old, whichever comes first.
func refreshAt(tr *authenticationv1.TokenRequest) time.Time {
	exp := tr.Status.ExpirationTimestamp.Time
	ttl := time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
	issuedAt := exp.Add(-ttl)
	at := exp.Add(-ttl / 5)
	if limit := issuedAt.Add(tokenMaxAge); limit.Before(at) {
		at = limit
	}
	return at
}
