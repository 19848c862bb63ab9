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

// TestServingFilter: the planner's EndpointSlice filter passes the events that change a
// Service's serving nodes, and only those, over a run of events on one filter.
func TestServingFilter(t *testing.T) {
	slice := func(name string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: "1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
		}
	}
	ep := func(addr, node string, ready bool, terminating bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready || terminating), Terminating: ptr(terminating)}}
	}
	v1 := slice("web-1", ep("192.0.2.1", "node1", true, false))
	rv := v1.DeepCopy()
	rv.ResourceVersion = "2"
	notReady := slice("web-1", ep("192.0.2.1", "node1", false, false))
	readyAgain := slice("web-1", ep("192.0.2.1", "node1", true, false))
	moved := slice("web-1", ep("192.0.2.1", "node2", true, false))
	newAddr := slice("web-1", ep("192.0.2.2", "node2", true, false))
	second := slice("web-1", ep("192.0.2.2", "node2", true, false), ep("192.0.2.3", "node2", true, false))
	third := slice("web-1", ep("192.0.2.2", "node2", true, false), ep("192.0.2.3", "node2", true, false), ep("192.0.2.4", "node3", true, false))
	other := slice("web-2", ep("192.0.2.5", "node2", true, false))
	// Ready on node2 and node3 in web-1 and on node2 in web-2; then node3's terminating (the
	// ready one on node2 is used), then none ready: the rule falls back to the serving,
	// terminating one (node3).
	terminating := slice("web-1", ep("192.0.2.2", "node2", false, false), ep("192.0.2.4", "node3", false, true))
	otherGone := slice("web-2", ep("192.0.2.5", "node2", false, false))

	f := newServingFilter(nil)
	for _, step := range []struct {
		name     string
		old, cur *discoveryv1.EndpointSlice
		want     bool
	}{
		{"a slice with a ready endpoint is added", nil, v1, true},
		{"a new resourceVersion alone", v1, rv, false},
		{"the endpoint no longer ready", rv, notReady, true},
		{"ready again", notReady, readyAgain, true},
		{"the endpoint moved to another node", readyAgain, moved, true},
		{"a new address on the same node (a pod replaced)", moved, newAddr, false},
		{"a second endpoint on the same node", newAddr, second, false},
		{"an endpoint on a node without one", second, third, true},
		{"a second slice on a node that has an endpoint", nil, other, false},
		{"node3's endpoint terminating while node2 has a ready one", third, terminating, true},
		{"none ready: the terminating one on node3 serves", other, otherGone, true},
		{"the second slice deleted: no change", otherGone, nil, false},
		{"the last slice deleted", terminating, nil, true},
	} {
		if got := f.changed(step.old, step.cur); got != step.want {
			t.Errorf("%s: changed = %v, want %v", step.name, got, step.want)
		}
	}
	if len(f.slices) != 0 || len(f.serving) != 0 {
		t.Errorf("filter keeps %v, %v after every slice is deleted", f.slices, f.serving)
	}
}
