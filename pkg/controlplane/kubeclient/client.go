package kubeclient

import (
	"context"
	"fmt"
	"net/http"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Scheme knows the types of the four API groups the agent uses, and the meta/v1 options
// types. Event recorders take it to build object references.
var Scheme = newScheme()

var (
	codecs         = serializer.NewCodecFactory(Scheme)
	parameterCodec = runtime.NewParameterCodec(Scheme)
)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,
		coordinationv1.AddToScheme,
		authenticationv1.AddToScheme,
		authorizationv1.AddToScheme,
	} {
		utilruntime.Must(add(s))
	}
	return s
}

// Clientset is the real client: one REST client per API group, sharing one HTTP client
// (one connection pool) and one rate limiter, as client-go's clientset does.
type Clientset struct {
	core, coordination, authentication, authorization rest.Interface
}

var _ Interface = (*Clientset)(nil)

// New returns a client for the API server of cfg. It does not contact the server.
func New(cfg *rest.Config) (*Clientset, error) {
	c := rest.CopyConfig(cfg)
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	// One rate limiter for all groups, as client-go's clientset shares one.
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, fmt.Errorf("kube client: burst must be positive when QPS is set")
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	cs := &Clientset{}
	for _, g := range []struct {
		into    *rest.Interface
		apiPath string
		gv      schema.GroupVersion
	}{
		{&cs.core, "/api", corev1.SchemeGroupVersion},
		{&cs.coordination, "/apis", coordinationv1.SchemeGroupVersion},
		{&cs.authentication, "/apis", authenticationv1.SchemeGroupVersion},
		{&cs.authorization, "/apis", authorizationv1.SchemeGroupVersion},
	} {
		*g.into, err = restClient(c, hc, g.apiPath, g.gv)
		if err != nil {
			return nil, fmt.Errorf("kube client for %s: %w", g.gv, err)
		}
	}
	return cs, nil
}

// restClient configures one group as client-go's generated group clients do.
func restClient(cfg *rest.Config, hc *http.Client, apiPath string, gv schema.GroupVersion) (rest.Interface, error) {
	c := *cfg
	c.GroupVersion = &gv
	c.APIPath = apiPath
	c.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(Scheme, codecs).WithoutConversion()
	return rest.RESTClientForConfigAndClient(&c, hc)
}

// CoreV1 returns the core/v1 resources.
func (c *Clientset) CoreV1() CoreV1Interface { return coreV1{c.core} }

// CoordinationV1 returns the coordination.k8s.io/v1 resources.
func (c *Clientset) CoordinationV1() CoordinationV1Interface { return coordinationV1{c.coordination} }

// AuthenticationV1 returns the authentication.k8s.io/v1 resources.
func (c *Clientset) AuthenticationV1() AuthenticationV1Interface {
	return authenticationV1{c.authentication}
}

// AuthorizationV1 returns the authorization.k8s.io/v1 resources.
func (c *Clientset) AuthorizationV1() AuthorizationV1Interface {
	return authorizationV1{c.authorization}
}

type coreV1 struct{ rc rest.Interface }

func (g coreV1) Pods(namespace string) PodInterface {
	return gentype.NewClientWithList("pods", g.rc, parameterCodec, namespace,
		func() *corev1.Pod { return &corev1.Pod{} }, func() *corev1.PodList { return &corev1.PodList{} },
		gentype.PrefersProtobuf[*corev1.Pod]())
}

func (g coreV1) Nodes() NodeInterface {
	return gentype.NewClient("nodes", g.rc, parameterCodec, "",
		func() *corev1.Node { return &corev1.Node{} }, gentype.PrefersProtobuf[*corev1.Node]())
}

func (g coreV1) Events(namespace string) EventInterface {
	return gentype.NewClient("events", g.rc, parameterCodec, namespace,
		func() *corev1.Event { return &corev1.Event{} }, gentype.PrefersProtobuf[*corev1.Event]())
}

func (g coreV1) ConfigMaps(namespace string) ConfigMapInterface {
	return gentype.NewClientWithList("configmaps", g.rc, parameterCodec, namespace,
		func() *corev1.ConfigMap { return &corev1.ConfigMap{} }, func() *corev1.ConfigMapList { return &corev1.ConfigMapList{} },
		gentype.PrefersProtobuf[*corev1.ConfigMap]())
}

func (g coreV1) Secrets(namespace string) SecretInterface {
	return gentype.NewClientWithList("secrets", g.rc, parameterCodec, namespace,
		func() *corev1.Secret { return &corev1.Secret{} }, func() *corev1.SecretList { return &corev1.SecretList{} },
		gentype.PrefersProtobuf[*corev1.Secret]())
}

func (g coreV1) ServiceAccounts(namespace string) ServiceAccountInterface {
	return serviceAccounts{rc: g.rc, namespace: namespace}
}

// serviceAccounts has only the token subresource, which no generic client covers.
type serviceAccounts struct {
	rc        rest.Interface
	namespace string
}

func (s serviceAccounts) CreateToken(ctx context.Context, name string, tr *authenticationv1.TokenRequest, opts metav1.CreateOptions) (*authenticationv1.TokenRequest, error) {
	out := &authenticationv1.TokenRequest{}
	err := s.rc.Post().UseProtobufAsDefault().
		Namespace(s.namespace).Resource("serviceaccounts").Name(name).SubResource("token").
		VersionedParams(&opts, parameterCodec).
		Body(tr).Do(ctx).Into(out)
	return out, err
}

type coordinationV1 struct{ rc rest.Interface }

func (g coordinationV1) Leases(namespace string) LeaseInterface {
	return gentype.NewClient("leases", g.rc, parameterCodec, namespace,
		func() *coordinationv1.Lease { return &coordinationv1.Lease{} }, gentype.PrefersProtobuf[*coordinationv1.Lease]())
}

type authenticationV1 struct{ rc rest.Interface }

func (g authenticationV1) TokenReviews() TokenReviewInterface {
	return gentype.NewClient("tokenreviews", g.rc, parameterCodec, "",
		func() *authenticationv1.TokenReview { return &authenticationv1.TokenReview{} },
		gentype.PrefersProtobuf[*authenticationv1.TokenReview]())
}

type authorizationV1 struct{ rc rest.Interface }

func (g authorizationV1) SubjectAccessReviews() SubjectAccessReviewInterface {
	return gentype.NewClient("subjectaccessreviews", g.rc, parameterCodec, "",
		func() *authorizationv1.SubjectAccessReview { return &authorizationv1.SubjectAccessReview{} },
		gentype.PrefersProtobuf[*authorizationv1.SubjectAccessReview]())
}
