package forward

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/forward/health"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestHealthChecks(t *testing.T) {
	hcPort := func(p int32) svcOption { return func(s *corev1.Service) { s.Spec.HealthCheckNodePort = p } }
	https := []discoveryv1.EndpointPort{epPort("https", corev1.ProtocolTCP, 8443)}
	svcs := []*corev1.Service{
		service("web", lb, "198.18.0.10", []corev1.ServicePort{tcpPort("http", 80, 30080), tcpPort("https", 443, 30443)}, externalLocal, hcPort(32000)),
		service("dual", lb, "198.18.0.11", []corev1.ServicePort{tcpPort("http", 80, 30081)}, dualStack("2001:db8:18::11"), externalLocal, hcPort(32001)),
		service("none-here", lb, "198.18.0.12", []corev1.ServicePort{tcpPort("http", 80, 30082)}, externalLocal, hcPort(32002)),
		service("cluster", lb, "198.18.0.13", []corev1.ServicePort{tcpPort("http", 80, 30083)}, hcPort(32003)),
		service("no-port", lb, "198.18.0.14", []corev1.ServicePort{tcpPort("http", 80, 30084)}, externalLocal),
	}
	slices := []*discoveryv1.EndpointSlice{
		// Two local ready pods, one listed in two slices (two ports): counted once; a local
		// terminating one, a local not-ready one and a remote one do not count.
		slice("web", "web-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.1.3", thisNode, ready),
			ep("198.18.1.4", thisNode, terminatingServing), ep("198.18.1.5", thisNode, notReady), ep("198.18.3.2", otherNode, ready)),
		slice("web", "web-2", https, ep("198.18.1.2", thisNode, ready)),
		slice("dual", "dual-v4", http, ep("198.18.1.2", thisNode, ready)),
		slice("dual", "dual-v6", http, ep("2001:db8:1::2", thisNode, ready), ep("2001:db8:1::3", thisNode, ready)),
		slice("none-here", "none-here-1", http, ep("198.18.3.2", otherNode, ready)),
		slice("cluster", "cluster-1", http, ep("198.18.1.2", thisNode, ready)),
	}
	want := []health.Service{
		{Namespace: "default", Name: "dual", Port: 32001, LocalEndpoints: map[string]int{"tcp4": 1, "tcp6": 2}},
		{Namespace: "default", Name: "none-here", Port: 32002, LocalEndpoints: map[string]int{"tcp4": 0}},
		{Namespace: "default", Name: "web", Port: 32000, LocalEndpoints: map[string]int{"tcp4": 2}},
	}
	if diff := cmp.Diff(want, HealthChecks(thisNode, svcs, slices)); diff != "" {
		t.Errorf("HealthChecks (-want +got):\n%s", diff)
	}
}
