package config

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// cmpOpts compares the controller's plain values: addresses by value, selectors by their
// canonical text.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b labels.Selector) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return a.String() == b.String()
	}),
}

func addrs(ss ...string) []netip.Addr {
	ips := make([]netip.Addr, len(ss))
	for i, s := range ss {
		ips[i] = netip.MustParseAddr(s)
	}
	return ips
}

// lbService is a single-stack IPv4 LoadBalancer Service "ns/web" on port 80/TCP; mutate
// changes it.
func lbService(mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			Selector:   map[string]string{"app": "web"},
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	return s
}

func annotate(kv ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Annotations = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

// plainRequest is RequestFor(lbService(nil), nsLabels); mutate changes it.
func plainRequest(mutate func(*allocator.Request)) allocator.Request {
	r := allocator.Request{
		Service: "ns/web", Namespace: "ns",
		NamespaceLabels: map[string]string{"team": "blue"},
		ServiceLabels:   map[string]string{"tier": "front"},
		Families:        []allocator.Family{allocator.IPv4},
		Ports:           []allocator.Port{{Protocol: "TCP", Port: 80}},
	}
	if mutate != nil {
		mutate(&r)
	}
	return r
}

func TestRequestFor(t *testing.T) {
	nsLabels := map[string]string{"team": "blue"}
	tests := []struct {
		name string
		svc  *corev1.Service
		want allocator.Request
	}{
		{
			name: "a plain Service asks for one address of its family",
			svc:  lbService(nil),
			want: plainRequest(nil),
		},
		{
			name: "ironlb.io/ips requests the addresses, one per family, spaces trimmed",
			svc:  lbService(annotate(v1alpha1.AnnotationIPs, " 198.51.100.7 , 2001:db8::7")),
			want: plainRequest(func(r *allocator.Request) { r.IPs = addrs("198.51.100.7", "2001:db8::7") }),
		},
		{
			name: "metallb.io/loadBalancerIPs requests addresses",
			svc:  lbService(annotate("metallb.io/loadBalancerIPs", "198.51.100.7")),
			want: plainRequest(func(r *allocator.Request) { r.IPs = addrs("198.51.100.7") }),
		},
		{
			name: "metallb.universe.tf/loadBalancerIPs requests addresses",
			svc:  lbService(annotate("metallb.universe.tf/loadBalancerIPs", "198.51.100.7")),
			want: plainRequest(func(r *allocator.Request) { r.IPs = addrs("198.51.100.7") }),
		},
		{
			name: "ironlb.io/pool requests a pool",
			svc:  lbService(annotate(v1alpha1.AnnotationPool, "gold")),
			want: plainRequest(func(r *allocator.Request) { r.Pool = "gold" }),
		},
		{
			name: "metallb.io/address-pool requests a pool",
			svc:  lbService(annotate("metallb.io/address-pool", "gold")),
			want: plainRequest(func(r *allocator.Request) { r.Pool = "gold" }),
		},
		{
			name: "metallb.universe.tf/address-pool requests a pool",
			svc:  lbService(annotate("metallb.universe.tf/address-pool", "gold")),
			want: plainRequest(func(r *allocator.Request) { r.Pool = "gold" }),
		},
		{
			name: "ironlb.io/sharing-key sets the sharing key",
			svc:  lbService(annotate(v1alpha1.AnnotationSharingKey, "web")),
			want: plainRequest(func(r *allocator.Request) { r.SharingKey = "web" }),
		},
		{
			name: "metallb.io/allow-shared-ip sets the sharing key",
			svc:  lbService(annotate("metallb.io/allow-shared-ip", "web")),
			want: plainRequest(func(r *allocator.Request) { r.SharingKey = "web" }),
		},
		{
			name: "metallb.universe.tf/allow-shared-ip sets the sharing key",
			svc:  lbService(annotate("metallb.universe.tf/allow-shared-ip", "web")),
			want: plainRequest(func(r *allocator.Request) { r.SharingKey = "web" }),
		},
		{
			name: "ours and MetalLB's annotations that agree are one request",
			svc: lbService(annotate(
				v1alpha1.AnnotationIPs, "198.51.100.7", "metallb.io/loadBalancerIPs", "198.51.100.7",
				v1alpha1.AnnotationPool, "gold", "metallb.universe.tf/address-pool", "gold",
				"metallb.io/allow-shared-ip", "web", "metallb.universe.tf/allow-shared-ip", " web ")),
			want: plainRequest(func(r *allocator.Request) {
				r.IPs, r.Pool, r.SharingKey = addrs("198.51.100.7"), "gold", "web"
			}),
		},
		{
			name: "unrelated annotations are ignored",
			svc:  lbService(annotate("example.com/ips", "nonsense")),
			want: plainRequest(nil),
		},
		{
			name: "spec.loadBalancerIP alone requests its address",
			svc:  lbService(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.8" }),
			want: plainRequest(func(r *allocator.Request) { r.IPs = addrs("198.51.100.8") }),
		},
		{
			name: "spec.loadBalancerIP among the annotation's addresses: the annotation's addresses",
			svc: lbService(func(s *corev1.Service) {
				annotate(v1alpha1.AnnotationIPs, "198.51.100.8,2001:db8::8")(s)
				s.Spec.LoadBalancerIP = "198.51.100.8"
			}),
			want: plainRequest(func(r *allocator.Request) { r.IPs = addrs("198.51.100.8", "2001:db8::8") }),
		},
		{
			name: "PreferDualStack with two families",
			svc: lbService(func(s *corev1.Service) {
				s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyPreferDualStack)
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
			}),
			want: plainRequest(func(r *allocator.Request) {
				r.Policy = allocator.PreferDualStack
				r.Families = []allocator.Family{allocator.IPv4, allocator.IPv6}
			}),
		},
		{
			name: "RequireDualStack keeps the order of ipFamilies, IPv6 first",
			svc: lbService(func(s *corev1.Service) {
				s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			}),
			want: plainRequest(func(r *allocator.Request) {
				r.Policy = allocator.RequireDualStack
				r.Families = []allocator.Family{allocator.IPv6, allocator.IPv4}
			}),
		},
		{
			name: "SingleStack IPv6",
			svc: lbService(func(s *corev1.Service) {
				s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicySingleStack)
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
			}),
			want: plainRequest(func(r *allocator.Request) {
				r.Policy = allocator.SingleStack
				r.Families = []allocator.Family{allocator.IPv6}
			}),
		},
		{
			name: "no ipFamilies: none requested (the allocator refuses that)",
			svc:  lbService(func(s *corev1.Service) { s.Spec.IPFamilies = nil }),
			want: plainRequest(func(r *allocator.Request) { r.Families = nil }),
		},
		{
			name: "every port with its protocol",
			svc: lbService(func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{
					{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
					{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
					{Name: "sctp", Port: 65535, Protocol: corev1.ProtocolSCTP},
				}
			}),
			want: plainRequest(func(r *allocator.Request) {
				r.Ports = []allocator.Port{{Protocol: "UDP", Port: 53}, {Protocol: "TCP", Port: 53}, {Protocol: "SCTP", Port: 65535}}
			}),
		},
		{
			name: "externalTrafficPolicy Local: the selector in canonical form (sorted)",
			svc: lbService(func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.Selector = map[string]string{"version": "2", "app": "web"}
			}),
			want: plainRequest(func(r *allocator.Request) { r.Local, r.EndpointSelector = true, "app=web,version=2" }),
		},
		{
			name: "externalTrafficPolicy Cluster: no endpoint selector",
			svc: lbService(func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			}),
			want: plainRequest(nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RequestFor(tt.svc, nsLabels)
			if err != nil {
				t.Fatalf("RequestFor: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestForRefusesMalformedRequests(t *testing.T) {
	tests := []struct {
		name    string
		svc     *corev1.Service
		wantErr string
		// want is the partial request: everything that could be read.
		want allocator.Request
	}{
		{
			name:    "ours and MetalLB's address annotations disagree: both named",
			svc:     lbService(annotate(v1alpha1.AnnotationIPs, "198.51.100.7", "metallb.io/loadBalancerIPs", "198.51.100.8")),
			wantErr: `annotations ironlb.io/ips ("198.51.100.7") and metallb.io/loadBalancerIPs ("198.51.100.8") disagree`,
			want:    plainRequest(nil),
		},
		{
			name:    "MetalLB's two pool annotations disagree: both named",
			svc:     lbService(annotate("metallb.io/address-pool", "a", "metallb.universe.tf/address-pool", "b")),
			wantErr: `annotations metallb.io/address-pool ("a") and metallb.universe.tf/address-pool ("b") disagree`,
			want:    plainRequest(nil),
		},
		{
			name:    "sharing keys disagree: both named",
			svc:     lbService(annotate(v1alpha1.AnnotationSharingKey, "a", "metallb.universe.tf/allow-shared-ip", "b")),
			wantErr: `annotations ironlb.io/sharing-key ("a") and metallb.universe.tf/allow-shared-ip ("b") disagree`,
			want:    plainRequest(nil),
		},
		{
			name:    "an empty annotation disagrees with a set one",
			svc:     lbService(annotate(v1alpha1.AnnotationPool, "", "metallb.io/address-pool", "b")),
			wantErr: `annotations ironlb.io/pool ("") and metallb.io/address-pool ("b") disagree`,
			want:    plainRequest(nil),
		},
		{
			name:    "a malformed address names the annotation and the value",
			svc:     lbService(annotate(v1alpha1.AnnotationIPs, "198.51.100.7, 198.51.100.999")),
			wantErr: `annotation ironlb.io/ips: "198.51.100.999" is not an IP address`,
			want:    plainRequest(nil),
		},
		{
			name:    "a malformed address in MetalLB's annotation names that annotation",
			svc:     lbService(annotate("metallb.universe.tf/loadBalancerIPs", "web")),
			wantErr: `annotation metallb.universe.tf/loadBalancerIPs: "web" is not an IP address`,
			want:    plainRequest(nil),
		},
		{
			name:    "an empty entry in the list is malformed",
			svc:     lbService(annotate(v1alpha1.AnnotationIPs, "198.51.100.7,")),
			wantErr: `annotation ironlb.io/ips: "" is not an IP address`,
			want:    plainRequest(nil),
		},
		{
			name:    "a malformed spec.loadBalancerIP names the field and the value",
			svc:     lbService(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100" }),
			wantErr: `spec.loadBalancerIP: "198.51.100" is not an IP address`,
			want:    plainRequest(nil),
		},
		{
			name: "spec.loadBalancerIP not among the annotation's addresses: both named",
			svc: lbService(func(s *corev1.Service) {
				annotate("metallb.io/loadBalancerIPs", "198.51.100.7")(s)
				s.Spec.LoadBalancerIP = "198.51.100.8"
			}),
			wantErr: `spec.loadBalancerIP 198.51.100.8 is not among the addresses of annotation metallb.io/loadBalancerIPs (198.51.100.7)`,
			want:    plainRequest(nil),
		},
		{
			name: "a malformed annotation still lets the pool and sharing key be read",
			svc: lbService(annotate(v1alpha1.AnnotationIPs, "nonsense",
				v1alpha1.AnnotationPool, "gold", v1alpha1.AnnotationSharingKey, "web")),
			wantErr: `annotation ironlb.io/ips: "nonsense" is not an IP address`,
			want:    plainRequest(func(r *allocator.Request) { r.Pool, r.SharingKey = "gold", "web" }),
		},
		{
			name: "disagreeing pools still let the sharing key and addresses be read",
			svc: lbService(annotate(v1alpha1.AnnotationPool, "a", "metallb.io/address-pool", "b",
				"metallb.io/allow-shared-ip", "web", v1alpha1.AnnotationIPs, "198.51.100.7")),
			wantErr: `annotations ironlb.io/pool ("a") and metallb.io/address-pool ("b") disagree`,
			want: plainRequest(func(r *allocator.Request) {
				r.SharingKey, r.IPs = "web", addrs("198.51.100.7")
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RequestFor(tt.svc, map[string]string{"team": "blue"})
			var re *RequestError
			if !errors.As(err, &re) || err.Error() != tt.wantErr {
				t.Fatalf("error %v, want a RequestError %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("partial request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClassHandles(t *testing.T) {
	const ours = "ironlb.io/ironlb"
	withClass := func(class *string) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Spec.LoadBalancerClass = class }
	}
	ofType := func(typ corev1.ServiceType) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Spec.Type = typ }
	}
	tests := []struct {
		name  string
		only  bool
		svc   *corev1.Service
		wants bool
	}{
		{"a LoadBalancer without a class is handled", false, lbService(nil), true},
		{"a LoadBalancer of our class is handled", false, lbService(withClass(ptr(ours))), true},
		{"a LoadBalancer of another class is not", false, lbService(withClass(ptr("example.com/other"))), false},
		{"an empty class is another class", false, lbService(withClass(ptr(""))), false},
		{"Only: a LoadBalancer without a class is not handled", true, lbService(nil), false},
		{"Only: a LoadBalancer of our class is handled", true, lbService(withClass(ptr(ours))), true},
		{"Only: a LoadBalancer of another class is not", true, lbService(withClass(ptr("example.com/other"))), false},
		{"a ClusterIP Service is not handled", false, lbService(ofType(corev1.ServiceTypeClusterIP)), false},
		{"a NodePort Service is not handled", false, lbService(ofType(corev1.ServiceTypeNodePort)), false},
		{"an ExternalName Service is not handled", false, lbService(ofType(corev1.ServiceTypeExternalName)), false},
		{"a Service without a type is not handled", false, lbService(ofType("")), false},
		{"a NodePort Service of our class is not handled", true, lbService(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.LoadBalancerClass = ptr(ours)
		}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Class{Name: ours, Only: tt.only}
			if got := c.Handles(tt.svc); got != tt.wants {
				t.Errorf("Handles = %v, want %v", got, tt.wants)
			}
		})
	}
}

func TestIngressIPs(t *testing.T) {
	st := corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
		{IP: "2001:db8::1"}, {Hostname: "lb.example.com"}, {IP: "not-an-ip"}, {IP: "198.51.100.1"},
	}}}
	want := addrs("2001:db8::1", "198.51.100.1")
	if diff := cmp.Diff(want, IngressIPs(&corev1.Service{Status: st}), cmpOpts); diff != "" {
		t.Errorf("ingress addresses, in order, without hostnames and junk (-want +got):\n%s", diff)
	}
}

func ptr[T any](v T) *T { return &v }
