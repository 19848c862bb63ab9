package speaker

import (
	"testing"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEventFilters(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", ResourceVersion: "1"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
		Status:     corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}}},
	}
	withSvc := func(f func(*corev1.Service)) *corev1.Service { c := svc.DeepCopy(); f(c); return c }
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-1", ResourceVersion: "1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.1"}, NodeName: ptr("node1")}},
	}
	withSlice := func(f func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
		c := slice.DeepCopy()
		f(c)
		return c
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"rack": "a"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.11"}}}}
	withNode := func(f func(*corev1.Node)) *corev1.Node { c := node.DeepCopy(); f(c); return c }
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan", Generation: 1}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24"}}}
	withPool := func(f func(*v1alpha1.IPPool)) *v1alpha1.IPPool { c := pool.DeepCopy(); f(c); return c }

	tests := []struct {
		name     string
		changed  changed
		old, cur any
		want     bool
	}{
		{"Service: a new resourceVersion alone is dropped", serviceChanged(), svc, withSvc(func(s *corev1.Service) { s.ResourceVersion = "2" }), false},
		{"Service: the controller's condition is dropped", serviceChanged(), svc,
			withSvc(func(s *corev1.Service) { s.Status.Conditions = []metav1.Condition{{Type: "IPAllocated"}} }), false},
		{"Service: a label is dropped", serviceChanged(), svc, withSvc(func(s *corev1.Service) { s.Labels = map[string]string{"a": "b"} }), false},
		{"Service: a new ingress IP syncs", serviceChanged(), svc,
			withSvc(func(s *corev1.Service) { s.Status.LoadBalancer.Ingress[0].IP = "198.51.100.2" }), true},
		{"Service: the traffic policy syncs", serviceChanged(), svc,
			withSvc(func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }), true},
		{"Service: the class syncs", serviceChanged(), svc, withSvc(func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("other") }), true},
		{"Service: a port is dropped (forwarding tracks it)", serviceChanged(), svc, withSvc(func(s *corev1.Service) { s.Spec.Ports[0].Port = 81 }), false},

		{"EndpointSlice: a new resourceVersion alone is dropped", sliceChanged(), slice,
			withSlice(func(s *discoveryv1.EndpointSlice) { s.ResourceVersion = "2" }), false},
		{"EndpointSlice: an endpoint no longer ready syncs", sliceChanged(), slice,
			withSlice(func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = ptr(false) }), true},
		{"EndpointSlice: ready spelled out (the default) is dropped", sliceChanged(), slice,
			withSlice(func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = ptr(true) }), false},
		{"EndpointSlice: an endpoint moved to another node syncs", sliceChanged(), slice,
			withSlice(func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].NodeName = ptr("node2") }), true},
		{"EndpointSlice: a new address is dropped (forwarding tracks it)", sliceChanged(), slice,
			withSlice(func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses[0] = "192.0.2.2" }), false},
		{"EndpointSlice: one more endpoint syncs", sliceChanged(), slice,
			withSlice(func(s *discoveryv1.EndpointSlice) { s.Endpoints = append(s.Endpoints, s.Endpoints[0]) }), true},

		{"Node: a heartbeat is dropped", nodeChanged, node,
			withNode(func(n *corev1.Node) {
				n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, LastHeartbeatTime: metav1.Now()}}
			}), false},
		{"Node: a label syncs", nodeChanged, node, withNode(func(n *corev1.Node) { n.Labels[LabelExcludeFromLB] = "" }), true},
		{"Node: an address syncs", nodeChanged, node, withNode(func(n *corev1.Node) { n.Status.Addresses[0].Address = "192.0.2.12" }), true},
		{"Node: pod ranges sync", nodeChanged, node, withNode(func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"198.18.0.0/24"} }), true},

		{"IPPool: the controller's counters are dropped", specChanged, pool,
			withPool(func(p *v1alpha1.IPPool) { p.Status.IPv4 = &v1alpha1.IPPoolAddressCounts{Assigned: "1"} }), false},
		{"IPPool: a new generation syncs", specChanged, pool, withPool(func(p *v1alpha1.IPPool) { p.Generation = 2 }), true},
		{"IPPool: a label syncs (advertisements select pools by label)", specChanged, pool,
			withPool(func(p *v1alpha1.IPPool) { p.Labels = map[string]string{"l2": "yes"} }), true},
		{"IPPool: retained addresses sync", specChanged, pool,
			withPool(func(p *v1alpha1.IPPool) { p.Status.RetainedAddresses = []string{"203.0.113.1"} }), true},
		{"L2Advertisement: the same generation is dropped", specChanged,
			&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "all", Generation: 3, ResourceVersion: "1"}},
			&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "all", Generation: 3, ResourceVersion: "2"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.changed(tt.old, tt.cur); got != tt.want {
				t.Errorf("changed = %v, want %v", got, tt.want)
			}
		})
	}
}
