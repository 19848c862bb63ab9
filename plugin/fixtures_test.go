package plugin

import (
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/controller"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(sec) * time.Second)) }

func pool(name string, age int, addrs ...string) v1alpha1.IPPool {
	return v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(age)}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
}

// svc is a single-stack IPv4 LoadBalancer Service; opts change it.
func svc(ns, name string, age int, opts ...func(*corev1.Service)) corev1.Service {
	s := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: at(age), Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}}},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func withIPs(ips ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		s.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ServiceConditionIPAllocated, Status: "True", Reason: controller.ReasonAllocated}}
	}
}

func withAnnotation(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[k] = v }
}

func withPort(port int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: port}}
	}
}

func dualStack(s *corev1.Service) {
	p := corev1.IPFamilyPolicyRequireDualStack
	s.Spec.IPFamilyPolicy = &p
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
}

func preferDualStack(s *corev1.Service) {
	dualStack(s)
	p := corev1.IPFamilyPolicyPreferDualStack
	s.Spec.IPFamilyPolicy = &p
}

func local(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	s.Spec.Selector = map[string]string{"app": s.Name}
}

func node(name string, labels map[string]string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func l2ad(name string, pools ...string) v1alpha1.L2Advertisement {
	return v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.L2AdvertisementSpec{IPPools: pools}}
}

func announced(ns, service, node string, mode v1alpha1.AnnouncementMode, ips ...string) v1alpha1.ServiceAnnouncement {
	a := v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: service + "." + node + ".l2"},
		ServiceName: service, NodeName: node, Mode: mode, IPs: ips}
	if mode == v1alpha1.AnnouncementL2 {
		a.Interfaces = []string{"eth0"}
	} else {
		// One per Service, listing the nodes (speaker.bgpReport).
		a.Name, a.NodeName, a.Nodes, a.Peers = service+".bgp", "", []string{node}, []string{"router"}
	}
	return a
}

func endpoints(ns, service string, ready bool, nodes ...string) discoveryv1.EndpointSlice {
	sl := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: service + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: service}}}
	for _, n := range nodes {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return sl
}

func session(node, peer string, state v1alpha1.BGPState, lastErr string) v1alpha1.BGPSessionState {
	return v1alpha1.BGPSessionState{ObjectMeta: metav1.ObjectMeta{Name: node + "-" + peer}, NodeName: node, PeerName: peer,
		PeerAddress: "192.0.2.1", State: state, LastError: lastErr}
}

// baseState: pool "web" (198.51.100.10-198.51.100.11, 2001:db8::10/127), an L2Advertisement
// for it and two nodes.
func baseState() *State {
	return &State{
		Class:      config.Class{Name: config.DefaultClassName},
		Namespaces: []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}},
		Nodes:      []corev1.Node{node("n1", nil), node("n2", nil)},
		Pools:      []v1alpha1.IPPool{pool("web", 0, "198.51.100.10-198.51.100.11", "2001:db8::10/127")},
		L2Ads:      []v1alpha1.L2Advertisement{l2ad("web", "web")},
	}
}
