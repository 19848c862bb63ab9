package forward

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// TestUDPStale: which UDP conntrack entries the cleanup deletes, as kube-proxy decides.
func TestUDPStale(t *testing.T) {
	dns := []corev1.ServicePort{protoPort("dns", corev1.ProtocolUDP, 53, 30053)}
	dnsPort := []discoveryv1.EndpointPort{epPort("dns", corev1.ProtocolUDP, 5353)}
	in := Input{Node: testNode, Options: DefaultOptions(),
		Services: []*corev1.Service{
			service("dns", lb, "198.18.0.53", dns, ingress("203.0.113.53"), withExternalIPs("192.0.2.53")),
			service("empty", lb, "198.18.0.54", []corev1.ServicePort{protoPort("dns", corev1.ProtocolUDP, 53, 30054)}, ingress("203.0.113.54")),
			service("web", lb, "198.18.0.80", []corev1.ServicePort{tcpPort("http", 80, 30080)}, ingress("203.0.113.80")),
		},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			slice("dns", "dns-1", dnsPort, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, terminatingServing), ep("198.18.3.3", otherNode, notReady)),
			slice("web", "web-1", http, ep("198.18.1.2", thisNode, ready)),
		},
	}
	targets := NewUDPTargets(in)
	ap := netip.MustParseAddrPort
	gone := map[netip.AddrPort]bool{ap("203.0.113.99:53"): true}
	for _, c := range []struct {
		dst, reply string
		want       bool
	}{
		{"203.0.113.53:53", "198.18.1.2:5353", false}, // a ready endpoint
		{"203.0.113.53:53", "198.18.3.2:5353", false}, // terminating but serving
		{"203.0.113.53:53", "198.18.3.3:5353", true},  // not ready
		{"203.0.113.53:53", "198.18.9.9:5353", true},  // gone
		{"198.18.0.53:53", "198.18.9.9:5353", true},   // ClusterIP
		{"192.0.2.53:53", "198.18.9.9:5353", true},    // externalIP
		{"198.51.100.1:30053", "198.18.9.9:5353", true},
		{"198.51.100.1:30053", "198.18.1.2:5353", false},
		{"203.0.113.54:53", "203.0.113.54:53", true},        // no endpoints: every entry (made while rejected)
		{"198.51.100.1:30054", "198.51.100.1:30054", false}, // NodePort without endpoints: not matched, as in kube-proxy
		{"203.0.113.99:53", "198.18.1.2:5353", true},        // its Service went
		{"203.0.113.80:80", "198.18.9.9:8080", false},       // TCP Service port: not ours to clean
		{"192.0.2.1:53", "192.0.2.1:53", false},             // not a Service
	} {
		if got := targets.stale(ap(c.dst), ap(c.reply), gone); got != c.want {
			t.Errorf("entry to %s answered by %s: stale %v, want %v", c.dst, c.reply, got, c.want)
		}
	}
}
