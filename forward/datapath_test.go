package forward

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// labInput is the cluster state of the lab: node1 is this node.
func labInput(services []*corev1.Service, slices ...*discoveryv1.EndpointSlice) Input {
	return Input{
		Node: Node{Name: "node1", Addresses: []netip.Addr{netip.MustParseAddr(node1V4), netip.MustParseAddr(node1V6)},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("198.18.2.0/24")}},
		Services:       services,
		EndpointSlices: slices,
		Options:        DefaultOptions(),
	}
}

var (
	pod1v4 = ep("198.18.1.2", "node1", ready)
	pod2v4 = ep("198.18.2.2", "node1", ready)
	pod3v4 = ep("198.18.3.2", "node2", ready)
	pod1v6 = ep("2001:db8:1::2", "node1", ready)
	pod3v6 = ep("2001:db8:3::2", "node2", ready)
)

// inState returns e with the conditions of st.
func inState(e discoveryv1.Endpoint, st epState) discoveryv1.Endpoint {
	e.Conditions = ep("", "", st).Conditions
	return e
}

// labServices is what TestDatapath forwards.
func labServices() []*corev1.Service {
	dns := []corev1.ServicePort{protoPort("dns", corev1.ProtocolUDP, 53, 30053)}
	return []*corev1.Service{
		service("web", lb, "198.18.0.10", []corev1.ServicePort{tcpPort("http", 80, 30080)},
			dualStack("2001:db8:18::10"), ingress("203.0.113.10", "2001:db8:113::10")),
		service("local", lb, "198.18.0.11", []corev1.ServicePort{tcpPort("http", 80, 30081)}, ingress("203.0.113.11"), externalLocal),
		service("remote", lb, "198.18.0.12", []corev1.ServicePort{tcpPort("http", 80, 30082)}, ingress("203.0.113.12"), externalLocal),
		service("empty", lb, "198.18.0.13", []corev1.ServicePort{tcpPort("http", 80, 30083), protoPort("dns", corev1.ProtocolUDP, 53, 30084)}, ingress("203.0.113.13")),
		service("sticky", lb, "198.18.0.14", []corev1.ServicePort{tcpPort("http", 80, 30085)}, ingress("203.0.113.14"), clientIPAffinity(60)),
		service("self", clusterT, "198.18.0.15", []corev1.ServicePort{tcpPort("http", 80, 0)}),
		service("dns", lb, "198.18.0.16", dns, ingress("203.0.113.16")),
		service("draining", lb, "198.18.0.17", []corev1.ServicePort{tcpPort("http", 80, 30087)}, ingress("203.0.113.17")),
		service("node-local", clusterT, "198.18.0.18", []corev1.ServicePort{tcpPort("http", 80, 0)}, internalLocal),
		// The client is outside "fw"'s ranges, the node inside "fw-node"'s.
		service("fw", lb, "198.18.0.19", []corev1.ServicePort{tcpPort("http", 80, 30089)},
			ingress("203.0.113.19"), withSourceRanges("192.0.2.0/24")),
		service("fw-node", lb, "198.18.0.20", []corev1.ServicePort{tcpPort("http", 80, 30090)},
			ingress("203.0.113.20"), withSourceRanges("198.51.100.0/28")),
		service("ext", clusterT, "198.18.0.21", []corev1.ServicePort{tcpPort("http", 80, 0)}, withExternalIPs("203.0.113.21"), externalLocal),
		service("proxied", lb, "198.18.0.22", []corev1.ServicePort{tcpPort("http", 80, 30092)}, proxyIngress("203.0.113.22")),
	}
}

func labSlices(sticky ...discoveryv1.Endpoint) []*discoveryv1.EndpointSlice {
	dnsPort := []discoveryv1.EndpointPort{epPort("dns", corev1.ProtocolUDP, 5353)}
	return []*discoveryv1.EndpointSlice{
		slice("web", "web-v4", http, pod1v4, inState(pod2v4, notReady), pod3v4),
		slice("web", "web-v6", http, pod1v6, pod3v6),
		slice("local", "local-1", http, pod1v4, pod3v4),
		slice("remote", "remote-1", http, pod3v4),
		slice("sticky", "sticky-1", http, sticky...),
		slice("self", "self-1", http, pod1v4),
		slice("dns", "dns-1", dnsPort, pod1v4, pod3v4),
		slice("draining", "draining-1", http, inState(pod1v4, terminatingServing), inState(pod3v4, terminatingNotServing)),
		slice("node-local", "node-local-1", http, pod1v4, pod3v4),
		slice("fw", "fw-1", http, pod1v4),
		slice("fw-node", "fw-node-1", http, pod1v4),
		slice("ext", "ext-1", http, pod1v4, pod3v4),
		slice("proxied", "proxied-1", http, pod1v4),
	}
}

// TestDatapath loads the rendered table into node1 of a namespace lab and sends real traffic:
// from the LAN client to LoadBalancer IPs and NodePorts, from node1 and its pods to
// ClusterIPs, and checks which pod answers and which client address it saw.
func TestDatapath(t *testing.T) {
	l := newTestLab(t)
	res := l.sync(t, labInput(labServices(), labSlices(pod1v4, pod3v4)...))
	if !res.Full {
		t.Fatalf("first sync was not a full one: %+v", res)
	}
	lan := func(pod string) reply { return reply{pod, clientV4} }
	masqueraded := func(pod string) reply { return reply{pod, node1V4} }

	t.Run("LoadBalancer IP, Cluster policy: both ready pods, the remote one masqueraded, never the not-ready one", func(t *testing.T) {
		wantOnly(t, getMany(t, l.client, "203.0.113.10:80", 40), lan("pod1"), masqueraded("pod3"))
	})
	t.Run("NodePort on the node's address, Cluster policy", func(t *testing.T) {
		wantOnly(t, getMany(t, l.client, node1V4+":30080", 40), lan("pod1"), masqueraded("pod3"))
	})
	t.Run("IPv6 LoadBalancer IP and NodePort", func(t *testing.T) {
		wantOnly(t, getMany(t, l.client, "[2001:db8:113::10]:80", 40), reply{"pod1", clientV6}, reply{"pod3", node1V6})
		wantOnly(t, getMany(t, l.client, "["+node1V6+"]:30080", 40), reply{"pod1", clientV6}, reply{"pod3", node1V6})
	})
	t.Run("ClusterIP from the node itself (output hook)", func(t *testing.T) {
		wantOnly(t, getMany(t, l.node1, "198.18.0.10:80", 40), reply{"pod1", node1V4}, reply{"pod3", node1V4})
		wantOnly(t, getMany(t, l.node1, "[2001:db8:18::10]:80", 40), reply{"pod1", node1V6}, reply{"pod3", node1V6})
	})
	t.Run("ClusterIP from a pod on the node keeps the pod's address", func(t *testing.T) {
		wantOnly(t, getMany(t, l.pods["pod2"], "198.18.0.10:80", 40), reply{"pod1", "198.18.2.2"}, reply{"pod3", "198.18.2.2"})
	})
	t.Run("Local policy: the local pod only, with the client's address", func(t *testing.T) {
		wantOnly(t, getMany(t, l.client, "203.0.113.11:80", 20), lan("pod1"))
		wantOnly(t, getMany(t, l.client, node1V4+":30081", 20), lan("pod1"))
		wantOnly(t, getMany(t, l.node1, "198.18.0.11:80", 40), reply{"pod1", node1V4}, reply{"pod3", node1V4})
	})
	t.Run("Local policy without a local endpoint: external traffic dropped, ClusterIP served", func(t *testing.T) {
		if r, err := get(l.client, "203.0.113.12:80", 500*time.Millisecond); err == nil || isRefused(err) {
			t.Errorf("got %v, %v; want a timeout (dropped)", r, err)
		}
		wantOnly(t, getMany(t, l.node1, "198.18.0.12:80", 5), reply{"pod3", node1V4})
	})
	t.Run("Local policy without a local endpoint, from the node or its pods: short-circuited to any endpoint", func(t *testing.T) {
		wantOnly(t, getMany(t, l.node1, "203.0.113.12:80", 5), reply{"pod3", node1V4})
		wantOnly(t, getMany(t, l.node1, node1V4+":30082", 5), reply{"pod3", node1V4})
		wantOnly(t, getMany(t, l.pods["pod2"], "203.0.113.12:80", 5), reply{"pod3", "198.18.2.2"})
		wantOnly(t, getMany(t, l.pods["pod2"], node1V4+":30082", 5), reply{"pod3", "198.18.2.2"})
	})
	t.Run("no endpoints: refused at once, TCP and UDP, every frontend", func(t *testing.T) {
		for _, c := range []struct{ ns, target string }{
			{l.client, "203.0.113.13:80"}, {l.client, node1V4 + ":30083"}, {l.node1, "198.18.0.13:80"}, {l.pods["pod2"], "198.18.0.13:80"},
		} {
			start := time.Now()
			_, err := get(c.ns, c.target, time.Second)
			if !isRefused(err) || time.Since(start) > time.Second {
				t.Errorf("TCP to %s: got %v after %v, want connection refused within 1 s", c.target, err, time.Since(start))
			}
		}
		if _, err := getUDP(l.client, "203.0.113.13:53", time.Second); !isRefused(err) {
			t.Errorf("UDP to 203.0.113.13:53: got %v, want connection refused (ICMP port unreachable)", err)
		}
	})
	t.Run("no ready endpoint: the serving terminating one, not the one that stopped serving", func(t *testing.T) {
		wantOnly(t, getMany(t, l.client, "203.0.113.17:80", 20), lan("pod1"))
	})
	t.Run("internalTrafficPolicy Local: the ClusterIP goes to this node's endpoint only", func(t *testing.T) {
		wantOnly(t, getMany(t, l.node1, "198.18.0.18:80", 20), reply{"pod1", node1V4})
	})
	t.Run("a port no Service uses on a Service's address is refused, other node ports are not touched", func(t *testing.T) {
		for _, c := range []struct{ ns, target string }{{l.client, "203.0.113.10:81"}, {l.pods["pod2"], "198.18.0.10:443"}} {
			if _, err := get(c.ns, c.target, time.Second); !isRefused(err) {
				t.Errorf("TCP to %s: got %v, want connection refused", c.target, err)
			}
		}
		if _, err := getUDP(l.client, "203.0.113.10:80", time.Second); !isRefused(err) {
			t.Errorf("UDP to 203.0.113.10:80: got %v, want connection refused", err)
		}
	})
	t.Run("loadBalancerSourceRanges: sources outside are dropped, from outside and from the node; NodePorts are not checked", func(t *testing.T) {
		for _, c := range []struct{ ns, target string }{{l.client, "203.0.113.19:80"}, {l.node1, "203.0.113.19:80"}, {l.pods["pod2"], "203.0.113.19:80"}} {
			if r, err := get(c.ns, c.target, 500*time.Millisecond); err == nil || isRefused(err) {
				t.Errorf("TCP to %s: got %v, %v; want a timeout (dropped)", c.target, r, err)
			}
		}
		wantOnly(t, getMany(t, l.client, node1V4+":30089", 5), lan("pod1"))
		wantOnly(t, getMany(t, l.client, "203.0.113.20:80", 5), lan("pod1"))
		wantOnly(t, getMany(t, l.node1, "203.0.113.20:80", 5), reply{"pod1", node1V4})
	})
	t.Run("externalIPs: forwarded with the Service's policy (Local: this node's pod, the client's address)", func(t *testing.T) {
		wantOnly(t, getMany(t, l.client, "203.0.113.21:80", 20), lan("pod1"))
	})
	t.Run("ipMode Proxy: the ingress IP is not DNATed", func(t *testing.T) {
		// Not DNATed, the packet is routed on to the node's (absent) default gateway.
		if r, err := get(l.client, "203.0.113.22:80", 500*time.Millisecond); err == nil || isRefused(err) {
			t.Errorf("got %v, %v; want no answer", r, err)
		}
		if got := nftIn(t, l.node1, "list", "map", "inet", TableName, frontendsMap(ipv4)); strings.Contains(got, "203.0.113.22") {
			t.Errorf("203.0.113.22 is a frontend:\n%s", got)
		}
	})
	t.Run("UDP", func(t *testing.T) {
		seen := map[string]bool{}
		for range 30 {
			r, err := getUDP(l.client, "203.0.113.16:53", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seen[r.pod] = true
		}
		if !seen["pod1"] || !seen["pod3"] || len(seen) != 2 {
			t.Errorf("UDP answers from %v, want pod1 and pod3", seen)
		}
	})
	t.Run("hairpin: a pod reaching itself through its Service", func(t *testing.T) {
		r, err := get(l.pods["pod1"], "198.18.0.15:80", 2*time.Second)
		if err != nil || r.pod != "pod1" || r.saw == "198.18.1.2" {
			t.Errorf("got %+v, %v; want pod1 answering a masqueraded source", r, err)
		}
	})
	t.Run("ClientIP affinity: one pod for every request, and a new one when it goes", func(t *testing.T) {
		got := getMany(t, l.client, "203.0.113.14:80", 30)
		if len(got) != 1 {
			t.Fatalf("answers %v, want all from one pod", got)
		}
		var first reply
		for r := range got {
			first = r
		}
		remaining, want := pod3v4, reply{"pod3", node1V4}
		if first.pod == "pod3" {
			remaining, want = pod1v4, reply{"pod1", clientV4}
		}
		res := l.sync(t, labInput(labServices(), labSlices(remaining)...))
		if res.Full {
			t.Errorf("sync removing %s: %+v, want an incremental one", first.pod, res)
		}
		wantOnly(t, getMany(t, l.client, "203.0.113.14:80", 10), want)
	})
	t.Run("UDP conntrack: a client on a fixed port moves off a removed endpoint, and off a removed Service", func(t *testing.T) {
		const srcPort = 40053
		first, err := getUDPFrom(l.client, srcPort, "203.0.113.16:53")
		if err != nil {
			t.Fatal(err)
		}
		remaining, want := pod3v4, "pod3"
		if first.pod == "pod3" {
			remaining, want = pod1v4, "pod1"
		}
		in := labInput(labServices(), labSlices(pod1v4, pod3v4)...)
		for i, s := range in.EndpointSlices {
			if s.Name == "dns-1" {
				in.EndpointSlices[i] = slice("dns", "dns-1", []discoveryv1.EndpointPort{epPort("dns", corev1.ProtocolUDP, 5353)}, remaining)
			}
		}
		l.sync(t, in)
		// The conntrack entry still sends the client where it went (the pod is still there in
		// the lab): this is what the cleanup is for.
		if r, err := getUDPFrom(l.client, srcPort, "203.0.113.16:53"); err != nil || r.pod != first.pod {
			t.Fatalf("before cleanup: %+v, %v; want %s still (the entry pins the flow)", r, err, first.pod)
		}
		var cleaner ConntrackCleaner
		clean := func(in Input) int {
			var n int
			inNamespace(t, l.node1, func() {
				var err error
				if n, err = cleaner.Clean(NewUDPTargets(in)); err != nil {
					t.Fatal(err)
				}
			})
			return n
		}
		if n := clean(in); n < 1 {
			t.Errorf("cleanup deleted %d entries, want at least 1", n)
		}
		if r, err := getUDPFrom(l.client, srcPort, "203.0.113.16:53"); err != nil || r.pod != want {
			t.Errorf("after cleanup: %+v, %v; want %s", r, err, want)
		}
		if n := clean(in); n != 0 {
			t.Errorf("second cleanup deleted %d entries, want 0", n)
		}
		// The Service goes: its entries go with it.
		var svcs []*corev1.Service
		for _, s := range in.Services {
			if s.Name != "dns" {
				svcs = append(svcs, s)
			}
		}
		in.Services = svcs
		l.sync(t, in)
		if n := clean(in); n < 1 {
			t.Errorf("cleanup after the Service went deleted %d entries, want at least 1", n)
		}
		inNamespace(t, l.node1, func() {
			flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range flows {
				if f.Forward.Protocol == unix.IPPROTO_UDP && f.Forward.DstIP.String() == "203.0.113.16" {
					t.Errorf("an entry to the gone Service remains: %s", f)
				}
			}
		})
	})
}

// wantOnly checks that the answers came from exactly the given (pod, client address) pairs.
func wantOnly(t *testing.T, got map[reply]int, want ...reply) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("answers %v, want each of %v and nothing else", got, want)
		return
	}
	for _, w := range want {
		if got[w] == 0 {
			t.Errorf("answers %v, want each of %v and nothing else", got, want)
			return
		}
	}
}
