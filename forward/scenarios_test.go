package forward

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

var (
	lb       = corev1.ServiceTypeLoadBalancer
	clusterT = corev1.ServiceTypeClusterIP
	http     = []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}
)

// scenarios are the renderer's behaviours, one cluster state each. TestGolden dumps each one;
// TestTrace walks packets through each.
var scenarios = map[string]func() Input{
	// No Services: the fixed part of the table.
	"skeleton": func() Input { return Input{Node: testNode, Options: DefaultOptions()} },

	// externalTrafficPolicy Cluster: ClusterIP, LoadBalancer IP and NodePort to the two ready
	// endpoints, one here and one on node2; the not-ready one gets nothing.
	"cluster-policy": clusterPolicy,

	// externalTrafficPolicy Local: external frontends use this node's endpoint only, the
	// ClusterIP all of them. "remote" has endpoints on node2 only: external traffic here is
	// dropped, its ClusterIP still works.
	"local-policy": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{
				service("local", lb, "198.18.0.11", []corev1.ServicePort{tcpPort("http", 80, 30081)}, ingress("203.0.113.11"), externalLocal),
				service("remote", lb, "198.18.0.12", []corev1.ServicePort{tcpPort("http", 80, 30082)}, ingress("203.0.113.12"), externalLocal),
			},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("local", "local-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
				slice("remote", "remote-1", http, ep("198.18.3.3", otherNode, ready)),
			},
		}
	},

	// No usable endpoint: rejected on every frontend, whether the Service has no slice or
	// only not-ready (and not serving) endpoints.
	"no-endpoints": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{
				service("empty", lb, "198.18.0.13", []corev1.ServicePort{tcpPort("http", 80, 30083)}, ingress("203.0.113.13")),
				service("down", lb, "198.18.0.14", []corev1.ServicePort{tcpPort("http", 80, 30084)}, ingress("203.0.113.14"), externalLocal),
			},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("down", "down-1", http, ep("198.18.1.2", thisNode, notReady), ep("198.18.3.2", otherNode, terminatingNotServing)),
			},
		}
	},

	// No ready endpoint: fall back to the serving and terminating ones; a terminating one that
	// no longer serves gets nothing.
	"terminating": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{service("web", lb, "198.18.0.15", []corev1.ServicePort{tcpPort("http", 80, 30085)}, ingress("203.0.113.15"))},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web", "web-1", http,
				ep("198.18.1.2", thisNode, terminatingServing), ep("198.18.3.2", otherNode, terminatingNotServing), ep("198.18.3.4", otherNode, notReady))},
		}
	},

	// sessionAffinity ClientIP with a 60 s timeout and with the default (10800 s).
	"affinity": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{
				service("sticky", lb, "198.18.0.16", []corev1.ServicePort{tcpPort("http", 80, 30086)}, ingress("203.0.113.16"), clientIPAffinity(60)),
				service("sticky-default", clusterT, "198.18.0.17", []corev1.ServicePort{tcpPort("http", 80, 0)}, clientIPAffinity(0)),
			},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("sticky", "sticky-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
				slice("sticky-default", "sticky-default-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
			},
		}
	},

	// TCP, UDP and SCTP ports of one Service, each to its own target port.
	"protocols": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{service("dns", lb, "198.18.0.18", []corev1.ServicePort{
				protoPort("dns-tcp", corev1.ProtocolTCP, 53, 30053), protoPort("dns-udp", corev1.ProtocolUDP, 53, 30053),
				protoPort("sig", corev1.ProtocolSCTP, 9999, 30999),
			}, ingress("203.0.113.18"))},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("dns", "dns-1", []discoveryv1.EndpointPort{
				epPort("dns-tcp", corev1.ProtocolTCP, 5353), epPort("dns-udp", corev1.ProtocolUDP, 5353), epPort("sig", corev1.ProtocolSCTP, 9000),
			}, ep("198.18.1.2", thisNode, ready))},
		}
	},

	// Dual-stack: one Service with an IPv4 and an IPv6 ClusterIP and LoadBalancer IP, and one
	// slice per family.
	"dual-stack": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{service("web", lb, "198.18.0.19", []corev1.ServicePort{tcpPort("http", 80, 30089)},
				dualStack("2001:db8:18::19"), ingress("203.0.113.19", "2001:db8:113::19"))},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("web", "web-v4", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
				slice("web", "web-v6", http, ep("2001:db8:1::2", thisNode, ready), ep("2001:db8:3::2", otherNode, ready)),
			},
		}
	},

	// internalTrafficPolicy Local: the ClusterIP goes to this node's endpoint only.
	"internal-local": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{service("node-local", clusterT, "198.18.0.20", []corev1.ServicePort{tcpPort("http", 80, 0)}, internalLocal)},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("node-local", "node-local-1", http,
				ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready))},
		}
	},

	// loadBalancerSourceRanges: "fw" admits 192.0.2.0/24 and 198.51.100.128/25 on its IPv4
	// LoadBalancer IP (its IPv6 one is open: no IPv6 range, as kube-proxy reads it); "fw-node"
	// has a range with this node's address, so its LoadBalancer IPs may be sources too;
	// "fw-open" has a /0 among its ranges, so no check at all.
	"source-ranges": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{
				service("fw", lb, "198.18.0.21", []corev1.ServicePort{tcpPort("http", 80, 30021)}, dualStack("2001:db8:18::21"),
					ingress("203.0.113.21", "2001:db8:113::21"), withSourceRanges("192.0.2.0/24", " 198.51.100.200/25", "bad")),
				service("fw-node", lb, "198.18.0.22", []corev1.ServicePort{tcpPort("http", 80, 30022)},
					ingress("203.0.113.22"), withSourceRanges("198.51.100.0/30")),
				service("fw-open", lb, "198.18.0.23", []corev1.ServicePort{tcpPort("http", 80, 30023)},
					ingress("203.0.113.23"), withSourceRanges("192.0.2.0/24", "0.0.0.0/0")),
			},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("fw", "fw-1", http, ep("198.18.1.2", thisNode, ready)),
				slice("fw", "fw-2", http, ep("2001:db8:1::2", thisNode, ready)),
				slice("fw-node", "fw-node-1", http, ep("198.18.1.2", thisNode, ready)),
				slice("fw-open", "fw-open-1", http, ep("198.18.1.2", thisNode, ready)),
			},
		}
	},

	// externalIPs: forwarded like LoadBalancer IPs with the Service's externalTrafficPolicy,
	// on any Service type, without refusing their other ports (they are often node addresses).
	"external-ips": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{
				service("ext", clusterT, "198.18.0.30", []corev1.ServicePort{tcpPort("http", 80, 0)}, withExternalIPs("192.0.2.30")),
				service("ext-local", corev1.ServiceTypeNodePort, "198.18.0.31", []corev1.ServicePort{tcpPort("http", 80, 30031)},
					withExternalIPs("192.0.2.31", "not-an-ip"), externalLocal),
				service("ext-none", clusterT, "198.18.0.32", []corev1.ServicePort{tcpPort("http", 80, 0)}, withExternalIPs("192.0.2.32")),
			},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("ext", "ext-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
				slice("ext-local", "ext-local-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
			},
		}
	},

	// ipMode Proxy: the load balancer proxies, so its address is not DNATed here; the VIP-mode
	// ingress IP of the same Service is.
	"ip-mode-proxy": func() Input {
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{service("proxied", lb, "198.18.0.24", []corev1.ServicePort{tcpPort("http", 80, 30024)},
				ingress("203.0.113.24"), proxyIngress("203.0.113.25"))},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("proxied", "proxied-1", http, ep("198.18.1.2", thisNode, ready))},
		}
	},

	// Topology hints (trafficDistribution PreferClose): "zonal" sends this node (zone-a) to the
	// endpoint hinted for zone-a; "partial" has an endpoint without hints, so all count;
	// "same-node" has node hints for this node; "elsewhere" hints no endpoint for zone-a.
	"topology": func() Input {
		zonal := func(name, clusterIP string) *corev1.Service {
			return service(name, clusterT, clusterIP, []corev1.ServicePort{tcpPort("http", 80, 0)})
		}
		return Input{Node: testNode, Options: DefaultOptions(),
			Services: []*corev1.Service{zonal("zonal", "198.18.0.40"), zonal("partial", "198.18.0.41"), zonal("same-node", "198.18.0.42"), zonal("elsewhere", "198.18.0.43")},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("zonal", "zonal-1", http, hinted(ep("198.18.1.2", thisNode, ready), []string{"zone-a"}),
					hinted(ep("198.18.3.2", otherNode, ready), []string{"zone-b"}), hinted(ep("198.18.3.3", otherNode, ready), []string{"zone-a"})),
				slice("partial", "partial-1", http, hinted(ep("198.18.1.2", thisNode, ready), []string{"zone-a"}), ep("198.18.3.2", otherNode, ready)),
				slice("same-node", "same-node-1", http, hinted(ep("198.18.1.2", thisNode, ready), []string{"zone-a"}, thisNode),
					hinted(ep("198.18.3.2", otherNode, ready), []string{"zone-a"}, otherNode)),
				slice("elsewhere", "elsewhere-1", http, hinted(ep("198.18.1.2", thisNode, ready), []string{"zone-b"}),
					hinted(ep("198.18.3.2", otherNode, ready), []string{"zone-c"})),
			},
		}
	},

	// Options: no ClusterIPs, and masquerade everything that leaves the node.
	"options": func() Input {
		in := clusterPolicy()
		in.Options = Options{ClusterIPs: false, MasqueradeAll: true}
		return in
	},
}

func clusterPolicy() Input {
	return Input{Node: testNode, Options: DefaultOptions(),
		Services: []*corev1.Service{service("web", lb, "198.18.0.10", []corev1.ServicePort{tcpPort("http", 80, 30080)}, ingress("203.0.113.10"))},
		EndpointSlices: []*discoveryv1.EndpointSlice{slice("web", "web-1", http,
			ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready), ep("198.18.1.3", thisNode, notReady))},
	}
}

func TestGolden(t *testing.T) {
	for name, in := range scenarios {
		t.Run(name, func(t *testing.T) {
			fake, _ := applyFake(t, in())
			golden(t, name, fake.Dump())
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	for name, in := range scenarios {
		t.Run(name, func(t *testing.T) {
			base := in()
			want := dumpOf(t, base)
			// Reverse the order of Services, slices and node addresses: same table.
			rev := in()
			reverse(rev.Services)
			reverse(rev.EndpointSlices)
			rev.Node.Addresses = append([]netip.Addr(nil), rev.Node.Addresses...)
			reverse(rev.Node.Addresses)
			if got := dumpOf(t, rev); got != want {
				t.Errorf("rendering the input in reverse order changed the table:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func dumpOf(t *testing.T, in Input) string {
	fake, _ := applyFake(t, in)
	return fake.Dump()
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}
