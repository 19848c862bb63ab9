package forward

import (
	"cmp"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/forward/health"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// HealthChecks returns the health checks this node serves (see package health): one per
// LoadBalancer Service with externalTrafficPolicy Local and a healthCheckNodePort, with the
// number of its ready endpoints on this node (distinct addresses, over all its ports, as
// kube-proxy counts them; terminating ones do not count, so that load balancers stop sending
// new connections to a node whose endpoints are going), per family of the Service. Sorted by
// namespace and name.
func HealthChecks(node string, services []*corev1.Service, epSlices []*discoveryv1.EndpointSlice) []health.Service {
	bySvc := slicesByService(epSlices)
	var out []health.Service
	for _, svc := range services {
		if svc == nil {
			continue
		}
		if hc, ok := healthCheck(node, svc, bySvc[svc.Namespace+"/"+svc.Name]); ok {
			out = append(out, hc)
		}
	}
	sortHealthChecks(out)
	return out
}

func sortHealthChecks(hcs []health.Service) {
	slices.SortFunc(hcs, func(a, b health.Service) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
}

// needsHealthCheck reports whether svc has a healthCheckNodePort this node serves.
func needsHealthCheck(svc *corev1.Service) bool {
	return svc != nil && svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
		svc.Spec.HealthCheckNodePort >= 1 && svc.Spec.HealthCheckNodePort <= 65535
}

// healthCheck returns the health check of one Service, given its EndpointSlices.
func healthCheck(node string, svc *corev1.Service, svcSlices []*discoveryv1.EndpointSlice) (health.Service, bool) {
	if !needsHealthCheck(svc) {
		return health.Service{}, false
	}
	fams := serviceFamilies(svc, parseAddrs(clusterIPs(svc)))
	local := [2]map[string]bool{{}, {}}
	for _, s := range svcSlices {
		if len(s.Ports) == 0 {
			continue
		}
		for i := range s.Endpoints {
			ep, ok := newEndpoint(node, &s.Endpoints[i], 0)
			if ok && ep.local && ep.ready && familyOf(ep.addr) == addressFamily(s.AddressType) {
				local[familyOf(ep.addr)][ep.addr.String()] = true
			}
		}
	}
	hc := health.Service{Namespace: svc.Namespace, Name: svc.Name, Port: uint16(svc.Spec.HealthCheckNodePort), LocalEndpoints: map[string]int{}}
	for _, f := range families {
		if fams[f] {
			hc.LocalEndpoints[[...]string{"tcp4", "tcp6"}[f]] = len(local[f])
		}
	}
	return hc, true
}
