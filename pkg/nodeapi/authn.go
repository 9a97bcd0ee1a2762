package nodeapi

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// TokenReviewer creates TokenReviews: client-go's
// Interface.AuthenticationV1().TokenReviews() is one.
type TokenReviewer interface {
	Create(ctx context.Context, review *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// userInfo is who a request comes from.
type userInfo struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// errNoCredentials: the request carried neither a client certificate nor a bearer token.
var errNoCredentials = errors.New("no client certificate and no bearer token")

// authenticator identifies requests by client certificate, then by bearer token.
type authenticator struct {
	clientCAs *x509.CertPool // nil: client certificates are not accepted
	tokens    TokenReviewer  // nil: tokens are not accepted
	ttl       time.Duration
	cache     *ttlCache[tokenAnswer] // keyed by the token's SHA-256
}

// tokenAnswer is a TokenReview's outcome: user is nil when the token was rejected.
type tokenAnswer struct {
	user   *userInfo
	reason string
}

func newAuthenticator(clientCAs *x509.CertPool, tokens TokenReviewer, ttl time.Duration, c clock.PassiveClock) *authenticator {
	return &authenticator{clientCAs: clientCAs, tokens: tokens, ttl: ttl, cache: newTTLCache[tokenAnswer](c)}
}

// authenticate returns the request's user. Any error means 401: errNoCredentials, a
// certificate or token that was rejected (the reason is in the error, for the log only), or
// a TokenReview that could not be made.
func (a *authenticator) authenticate(r *http.Request) (*userInfo, error) {
	var errs []error
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		u, err := a.certificateUser(r)
		if err == nil {
			return u, nil
		}
		errs = append(errs, err)
	}
	if token, ok := bearerToken(r); ok {
		u, err := a.tokenUser(r.Context(), token)
		if err == nil {
			return u, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, errNoCredentials
	}
	return nil, errors.Join(errs...)
}

// certificateUser verifies the client certificate chain against the client CA bundle, as
// the API server's x509 authenticator does: CN is the user, each O a group.
func (a *authenticator) certificateUser(r *http.Request) (*userInfo, error) {
	if a.clientCAs == nil {
		return nil, errors.New("client certificate: no client CA bundle is configured (--client-ca-file)")
	}
	certs := r.TLS.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         a.clientCAs,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("client certificate %q: %w", certs[0].Subject.CommonName, err)
	}
	if certs[0].Subject.CommonName == "" {
		return nil, errors.New("client certificate: empty common name")
	}
	return &userInfo{Name: certs[0].Subject.CommonName, Groups: append([]string(nil), certs[0].Subject.Organization...)}, nil
}

// bearerToken is the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// tokenUser asks the API server who holds token, through the cache. Rejections are cached
// like acceptances (a retry would be rejected again); failures to ask are not.
func (a *authenticator) tokenUser(ctx context.Context, token string) (*userInfo, error) {
	if a.tokens == nil {
		return nil, errors.New("bearer token: token authentication is not configured")
	}
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	ans, ok := a.cache.get(key)
	if !ok {
		review, err := a.tokens.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("bearer token: TokenReview: %w", err)
		}
		ans = tokenAnswer{reason: review.Status.Error}
		if review.Status.Authenticated {
			u := review.Status.User
			ans.user = &userInfo{Name: u.Username, UID: u.UID, Groups: u.Groups}
			if len(u.Extra) > 0 {
				ans.user.Extra = make(map[string][]string, len(u.Extra))
				for k, v := range u.Extra {
					ans.user.Extra[k] = v
				}
			}
		}
		a.cache.set(key, ans, a.ttl)
	}
	if ans.user == nil {
		reason := ans.reason
		if reason == "" {
			reason = "not authenticated"
		}
		return nil, fmt.Errorf("bearer token: rejected by the API server: %s", reason)
	}
	return ans.user, nil
}
