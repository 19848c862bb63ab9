package forward

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The test cluster: this node ("node1") and another ("node2"). Addresses come from the
// documentation ranges only: LAN 198.51.100.0/24, LoadBalancer IPs 203.0.113.0/24, service
// and pod addresses 198.18.0.0/15, IPv6 2001:db8::/32.
const (
	thisNode  = "node1"
	otherNode = "node2"
)

var testNode = Node{Name: thisNode, Addresses: []netip.Addr{
	netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:100::1"),
}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24"), netip.MustParsePrefix("2001:db8:2::/64")}, Zone: "zone-a"}

// hinted returns e with topology hints for the given zones and nodes.
func hinted(e discoveryv1.Endpoint, zones []string, nodes ...string) discoveryv1.Endpoint {
	e.Hints = &discoveryv1.EndpointHints{}
	for _, z := range zones {
		e.Hints.ForZones = append(e.Hints.ForZones, discoveryv1.ForZone{Name: z})
	}
	for _, n := range nodes {
		e.Hints.ForNodes = append(e.Hints.ForNodes, discoveryv1.ForNode{Name: n})
	}
	return e
}

type svcOption func(*corev1.Service)

// service returns a Service of the given type with a ClusterIP and the given ports.
func service(name string, typ corev1.ServiceType, clusterIP string, ports []corev1.ServicePort, opts ...svcOption) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type: typ, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
		},
	}
	if typ == corev1.ServiceTypeClusterIP {
		s.Spec.ExternalTrafficPolicy = ""
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func tcpPort(name string, port, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, NodePort: nodePort}
}

func protoPort(name string, proto corev1.Protocol, port, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port, NodePort: nodePort}
}

func ingress(ips ...string) svcOption {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func withSourceRanges(cidrs ...string) svcOption {
	return func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = cidrs }
}

func withExternalIPs(ips ...string) svcOption {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = ips }
}

// proxyIngress adds a LoadBalancer ingress IP with ipMode Proxy.
func proxyIngress(ip string) svcOption {
	return func(s *corev1.Service) {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress,
			corev1.LoadBalancerIngress{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)})
	}
}

func externalLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

func internalLocal(s *corev1.Service) {
	s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
}

func clientIPAffinity(seconds int32) svcOption {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		if seconds > 0 {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(seconds)}}
		}
	}
}

func dualStack(v6ClusterIP string) svcOption {
	return func(s *corev1.Service) {
		s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, v6ClusterIP)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
}

// Endpoint states.
type epState int

const (
	ready epState = iota
	notReady
	terminatingServing
	terminatingNotServing
)

// ep is an endpoint on a node in a state.
func ep(addr, node string, st epState) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr.To(node)}
	switch st {
	case ready:
		e.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
	case notReady:
		e.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(false)}
	case terminatingServing:
		e.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	case terminatingNotServing:
		e.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(true)}
	}
	return e
}

func epPort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(port)}
}

// slice returns an EndpointSlice of service svc; the address type follows the first endpoint.
func slice(svc, name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	at := discoveryv1.AddressTypeIPv4
	if len(eps) > 0 && strings.Contains(eps[0].Addresses[0], ":") {
		at = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

// applyFake renders in and applies it to a fresh knftables.Fake, failing the test on error.
func applyFake(t testing.TB, in Input) (*knftables.Fake, *Applier) {
	t.Helper()
	fake := knftables.NewFake(TableFamily, TableName)
	a := NewApplier(fake)
	if _, err := a.Sync(context.Background(), Render(in)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return fake, a
}

// golden compares got with testdata/name.golden, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; -update rewrites it):\n%s", path, diff)
	}
}
