// Package kubeclient builds the clients that both the controller and the speaker need, with the
// component's own client-side rate limits: whatever rest.Config a caller passes (a kubeconfig,
// the in-cluster configuration, a test's admin configuration), the component talks to the API
// server at the limits of its Config, so tests and benchmarks run at the shipped defaults.
package kubeclient

import (
	"fmt"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Limits are client-side rate limits: a token bucket of Burst requests refilled at QPS per
// second. client-go's defaults (QPS 5, Burst 10) are far too low for a controller that writes
// one status per Service (a 5,000-Service burst would take about 17 minutes); the API server's
// own flow control (API Priority and Fairness, and the FlowSchema the chart installs) is what
// keeps a fast client from starving others.
type Limits struct {
	// QPS is the sustained rate; 0 means client-go's default (5), a negative value no limit.
	QPS float32
	// Burst is how many requests may go at once above QPS; 0 means client-go's default (10).
	Burst int
}

// Clients are the Kubernetes clients of one component.
type Clients struct {
	Kube kubernetes.Interface
	// Events is a separate client for the event recorder, with limits of its own, so events
	// never take the requests that status writes need.
	Events kubernetes.Interface
	// CRD reaches the ironlb.io/v1alpha1 resources (it shares Kube's rate limiter).
	CRD rest.Interface
	// Scheme knows Kubernetes' and ironlb's types, for event recorders.
	Scheme *runtime.Scheme
}

// New builds the clients for cfg: Kube and CRD share one rate limiter of api, Events has one of
// events. cfg itself is not changed.
func New(cfg *rest.Config, api, events Limits) (*Clients, error) {
	apiCfg := WithLimits(cfg, api)
	// One limiter for both clients: the limit is the component's, not per API group.
	apiCfg.RateLimiter = rateLimiter(api)
	kube, err := kubernetes.NewForConfig(withProtobuf(apiCfg))
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	crd, err := v1alpha1.NewRESTClient(apiCfg)
	if err != nil {
		return nil, err
	}
	ev, err := kubernetes.NewForConfig(withProtobuf(WithLimits(cfg, events)))
	if err != nil {
		return nil, fmt.Errorf("events client: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	return &Clients{Kube: kube, Events: ev, CRD: crd, Scheme: scheme}, nil
}

// withProtobuf returns a copy of cfg that speaks protobuf, as kube-proxy and the kubelet do:
// Kubernetes' own types decode several times faster than from JSON, which is most of the cost
// of listing and watching thousands of Services and EndpointSlices. (ironlb's own resources
// have no protobuf encoding: the CRD client keeps JSON.) The rate limiter stays shared.
func withProtobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c
}

// WithLimits returns a copy of cfg with the given limits (and no rate limiter of cfg's own).
func WithLimits(cfg *rest.Config, l Limits) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst, c.RateLimiter = l.QPS, l.Burst, nil
	return c
}

// rateLimiter is the token bucket client-go would build for l; nil when l has no limit.
func rateLimiter(l Limits) flowcontrol.RateLimiter {
	qps, burst := l.QPS, l.Burst
	if qps == 0 {
		qps = rest.DefaultQPS
	}
	if burst == 0 {
		burst = rest.DefaultBurst
	}
	if qps < 0 {
		return nil
	}
	return flowcontrol.NewTokenBucketRateLimiter(qps, burst)
}
