package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// world builds snapshots: nodes node1..nodeN on 198.51.100.0/24 with eth0.
type world struct {
	nodes    []*corev1.Node
	services []*corev1.Service
	slices   []*discoveryv1.EndpointSlice
	pools    []*v1alpha1.IPPool
	ads      []*v1alpha1.L2Advertisement
	bgpAds   []*v1alpha1.BGPAdvertisement
	peers    []*v1alpha1.BGPPeer
	alive    map[string]bool
	renewing map[string]bool           // nodes with a fresh Lease
	ifaces   map[string][]l2.Interface // per node; default lanIfaces
	reach    map[string]Reach          // what each node published (memberlist metadata)
}

// lanIfaces are a node's interfaces by default: eth0 on the LAN (198.51.100.0/24,
// 2001:db8:100::/64), and lo.
func lanIfaces() []l2.Interface {
	return []l2.Interface{
		{Name: "eth0", Up: true, Virtual: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.11/24"), netip.MustParsePrefix("2001:db8:100::11/64")}},
		{Name: "lo", Up: true, Virtual: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
	}
}

func newWorld(nodes int) *world {
	w := &world{}
	for i := 1; i <= nodes; i++ {
		w.nodes = append(w.nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i), Labels: map[string]string{"rack": fmt.Sprintf("r%d", i)}}})
	}
	w.pools = []*v1alpha1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan", Labels: map[string]string{"l2": "yes"}},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.200-198.51.100.250", "2001:db8:100::200-2001:db8:100::250"}}}}
	w.ads = []*v1alpha1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "all"}}}
	return w
}

// svc adds a LoadBalancer Service with the given ingress IPs and ready endpoints on nodes.
func (w *world) svc(name string, ips []string, local bool, readyOn ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	w.services = append(w.services, s)
	w.endpoints(name, true, readyOn...)
	return s
}

// endpoints adds a slice for service with endpoints on nodes, ready or not (serving either way).
func (w *world) endpoints(service string, ready bool, nodes ...string) {
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("%s-%d", service, len(w.slices)),
		Labels: map[string]string{discoveryv1.LabelServiceName: service}}}
	for _, n := range nodes {
		serving := true
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving}})
	}
	w.slices = append(w.slices, sl)
}

func (w *world) plan(node string) Plan { return Compute(w.snapshot(node)) }

func (w *world) snapshot(node string) *Snapshot {
	ifaces, ok := w.ifaces[node]
	if !ok {
		ifaces = lanIfaces()
	}
	return &Snapshot{
		Node: node, Alive: w.alive, Renewing: w.renewing, Nodes: w.nodes, Services: w.services, Slices: w.slices, Pools: w.pools, L2Ads: w.ads, BGPAds: w.bgpAds, Peers: w.peers,
		Interfaces: ifaces, Reach: w.reach,
		Handles: func(s *corev1.Service) bool {
			return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil
		},
	}
}

// publish runs every node's plan and hands on what each publishes of its reach, as memberlist
// metadata does; it returns after the published reach no longer changes.
func (w *world) publish(t *testing.T) {
	t.Helper()
	for range 3 {
		next := map[string]Reach{}
		for _, n := range w.nodes {
			if r := l2Of(w.plan(n.Name)).Reach; len(r) > 0 {
				next[n.Name] = r
			}
		}
		if cmp.Equal(next, w.reach, cmpopts.EquateEmpty()) {
			return
		}
		w.reach = next
	}
	t.Fatalf("published reach does not settle: %v", w.reach)
}

// owners returns, per IP, the nodes whose plan owns it.
func (w *world) owners() map[string][]string {
	out := map[string][]string{}
	for _, n := range w.nodes {
		for ip := range l2Of(w.plan(n.Name)).Owned {
			out[ip.String()] = append(out[ip.String()], n.Name)
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// owner asserts that exactly one node owns ip and returns it ("" when none does).
func (w *world) owner(t *testing.T, ip string) string {
	t.Helper()
	got := w.owners()[ip]
	if len(got) > 1 {
		t.Fatalf("%s is owned by %v: two nodes would answer", ip, got)
	}
	if len(got) == 0 {
		return ""
	}
	return got[0]
}

func TestPlanEligibility(t *testing.T) {
	const ip = "198.51.100.200"
	tests := []struct {
		name  string
		setup func(w *world)
		want  []string // the possible owners; nil: nobody
	}{
		{"a Cluster Service with a ready endpoint is owned by one of all nodes", func(w *world) {
			w.svc("web", []string{ip}, false, "node3")
		}, []string{"node1", "node2", "node3"}},
		{"no endpoint at all: still answered by one node, whose rules refuse at once", func(w *world) {
			w.svc("web", []string{ip}, false)
		}, []string{"node1", "node2", "node3"}},
		{"Local without any endpoint: also answered, to be refused", func(w *world) {
			w.svc("web", []string{ip}, true)
		}, []string{"node1", "node2", "node3"}},
		{"only unready endpoints that still serve: announced (terminating fallback)", func(w *world) {
			w.svc("web", []string{ip}, false)
			w.endpoints("web", false, "node2")
		}, []string{"node1", "node2", "node3"}},
		{"Local: only a node with a ready local endpoint", func(w *world) {
			w.svc("web", []string{ip}, true, "node2")
		}, []string{"node2"}},
		{"Local: a ready endpoint elsewhere beats a not-ready one here", func(w *world) {
			w.svc("web", []string{ip}, true, "node3")
			w.endpoints("web", false, "node1")
		}, []string{"node3"}},
		{"the advertisement's node selector limits the owners", func(w *world) {
			w.ads[0].Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r1"}}}
			w.svc("web", []string{ip}, false, "node3")
		}, []string{"node1"}},
		{"the exclude-from-external-load-balancers label removes a node", func(w *world) {
			w.nodes[0].Labels[LabelExcludeFromLB] = ""
			w.nodes[1].Labels[LabelExcludeFromLB] = "true"
			w.svc("web", []string{ip}, false, "node1")
		}, []string{"node3"}},
		{"a node memberlist considers dead never owns", func(w *world) {
			w.alive = map[string]bool{"node1": true, "node3": true}
			w.ads[0].Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r2"}}}
			w.svc("web", []string{ip}, false, "node1")
		}, nil},
		{"an IP in no pool is not announced", func(w *world) {
			w.svc("web", []string{"203.0.113.7"}, false, "node1")
		}, nil},
		{"a pool no advertisement selects is not announced", func(w *world) {
			w.ads[0].Spec.IPPools = []string{"other"}
			w.svc("web", []string{ip}, false, "node1")
		}, nil},
		{"an advertisement selecting the pool by label", func(w *world) {
			w.ads[0].Spec.IPPoolSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"l2": "yes"}}}
			w.svc("web", []string{ip}, false, "node1")
		}, []string{"node1", "node2", "node3"}},
		{"a Service of another load balancer class is ignored", func(w *world) {
			s := w.svc("web", []string{ip}, false, "node1")
			s.Spec.LoadBalancerClass = ptr("example.com/other")
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(3)
			tt.setup(w)
			got := w.owner(t, ip)
			if tt.want == nil {
				if got != "" {
					t.Fatalf("owned by %s, want nobody", got)
				}
				return
			}
			if !slices.Contains(tt.want, got) {
				t.Fatalf("owned by %q, want one of %v", got, tt.want)
			}
		})
	}
}

func TestPlanKeepsGroupsTogether(t *testing.T) {
	for i := range 20 { // several keys, so a lucky hash cannot pass the test
		w := newWorld(3)
		v4, v6 := fmt.Sprintf("198.51.100.%d", 200+i), fmt.Sprintf("2001:db8:100::%x", 0x200+i)
		w.svc("dual", []string{v4, v6}, false, "node1")
		w.svc("shares-v4", []string{v4}, false, "node2")
		owners := w.owners()
		if len(owners[v4]) != 1 || !slices.Equal(owners[v4], owners[v6]) {
			t.Fatalf("both families and the shared IP must be on one node: %v", owners)
		}
		p := w.plan(owners[v4][0])
		want := map[string][]netip.Addr{
			"default/dual":      {netip.MustParseAddr(v4), netip.MustParseAddr(v6)},
			"default/shares-v4": {netip.MustParseAddr(v4)},
		}
		got := map[string][]netip.Addr{}
		for k, a := range l2Of(p).Services {
			got[k] = a.IPs
			if !slices.Equal(a.Interfaces, []string{"eth0"}) {
				t.Errorf("%s announced on %v, want eth0 (its subnet)", k, a.Interfaces)
			}
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("announced services (-want +got):\n%s", diff)
		}
	}
}

func TestPlanSpreadsOwnership(t *testing.T) {
	w := newWorld(3)
	for i := range 30 {
		w.svc(fmt.Sprintf("s%d", i), []string{fmt.Sprintf("198.51.100.%d", 200+i)}, false, "node1")
	}
	count := map[string]int{}
	for ip, owners := range w.owners() {
		if len(owners) != 1 {
			t.Fatalf("%s owned by %v", ip, owners)
		}
		count[owners[0]]++
	}
	t.Logf("30 IPs over 3 nodes: %v", count)
	for _, n := range w.nodes {
		if c := count[n.Name]; c == 0 || c > 15 {
			t.Errorf("%s owns %d of 30 IPs, want 1..15", n.Name, c)
		}
	}
}

func TestPlanOwnershipMovesOnlyFromTheDeadNode(t *testing.T) {
	w := newWorld(3)
	for i := range 30 {
		w.svc(fmt.Sprintf("s%d", i), []string{fmt.Sprintf("198.51.100.%d", 200+i)}, false, "node1")
	}
	before := w.owners()
	w.alive = map[string]bool{"node1": true, "node2": true}
	after := w.owners()
	for ip, was := range before {
		now := after[ip]
		if len(now) != 1 || now[0] == "node3" {
			t.Fatalf("%s owned by %v with node3 dead", ip, now)
		}
		if was[0] != "node3" && now[0] != was[0] {
			t.Errorf("%s moved from live %s to %s", ip, was[0], now[0])
		}
	}
}

func TestPlanInterfaces(t *testing.T) {
	w := newWorld(1)
	w.ads[0].Spec.Interfaces = []string{"eth0", "bond7"}
	w.svc("web", []string{"198.51.100.200"}, false, "node1")
	p := w.plan("node1")
	if got := l2Of(p).Owned[netip.MustParseAddr("198.51.100.200")]; !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("interfaces %v, want [eth0]", got)
	}
	if len(p.Warnings) != 1 || p.Warnings[0].Kind != "L2Advertisement" || p.Warnings[0].Name != "all" || !strings.Contains(p.Warnings[0].Message, "bond7") {
		t.Fatalf("warnings %+v, want one on L2Advertisement all naming bond7", p.Warnings)
	}
	w.ads[0].Spec.Interfaces = []string{"bond7"}
	p = w.plan("node1")
	if len(l2Of(p).Owned) != 0 {
		t.Errorf("announced on %v with no usable interface", l2Of(p).Owned)
	}
	if len(p.Warnings) != 2 || p.Warnings[0].Reason != "InterfaceMissing" || p.Warnings[1].Reason != "CannotAnnounce" {
		t.Errorf("warnings %+v, want the missing interface and the Service this node cannot announce", p.Warnings)
	}
}

func ptr[T any](v T) *T { return &v }

// A node that cannot announce an IP (no interface the advertisement names, the interface down,
// not on the IP's subnet while others are) is not eligible: once it published that, the next
// eligible node owns the IP, and only one node does.
func TestPlanOwnerThatCannotAnnounceIsReplaced(t *testing.T) {
	const ip = "198.51.100.200"
	offSubnet := func() []l2.Interface {
		return []l2.Interface{{Name: "eth0", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24")}}}
	}
	tests := []struct {
		name   string
		ads    []string                                   // the advertisement's interfaces
		break_ func(ifaces []l2.Interface) []l2.Interface // what happens to the first owner
		all    bool                                       // every node is broken the same way
		want   string                                     // "other": another node owns; "any"; "none"
	}{
		{"the owner's interface goes down", nil, func(i []l2.Interface) []l2.Interface { i[0].Up = false; return i }, false, "other"},
		{"the owner has no interface the advertisement names", []string{"eth0"}, func(i []l2.Interface) []l2.Interface { i[0].Name = "eth9"; return i }, false, "other"},
		{"the named interface is down on the owner", []string{"eth0"}, func(i []l2.Interface) []l2.Interface { i[0].Up = false; return i }, false, "other"},
		{"the owner is not on the IP's subnet while others are", nil, func([]l2.Interface) []l2.Interface { return offSubnet() }, false, "other"},
		{"no node is on the IP's subnet: one of all answers on its physical interface", nil, func([]l2.Interface) []l2.Interface { return offSubnet() }, true, "any"},
		{"no node can announce at all", []string{"eth0"}, func(i []l2.Interface) []l2.Interface { i[0].Up = false; return i }, true, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(3)
			if tt.ads != nil {
				w.ads[0].Spec.Interfaces = tt.ads
			}
			w.svc("web", []string{ip, "198.51.100.201"}, false, "node1")
			w.publish(t)
			first := w.owner(t, ip)
			if first == "" {
				t.Fatal("nobody owns the IP before anything broke")
			}
			w.ifaces = map[string][]l2.Interface{}
			for _, n := range w.nodes {
				if tt.all || n.Name == first {
					w.ifaces[n.Name] = tt.break_(lanIfaces())
				}
			}
			w.publish(t)
			got := w.owner(t, ip)
			switch tt.want {
			case "other":
				if got == "" || got == first {
					t.Errorf("owned by %q after %s broke, want another node", got, first)
				}
			case "any":
				if got == "" {
					t.Error("nobody owns the IP, want one node")
				}
			case "none":
				if got != "" {
					t.Errorf("owned by %s, which cannot announce it", got)
				}
			}
			// What the owner announces is real: an up interface.
			if got != "" {
				p := w.plan(got)
				if len(l2Of(p).Owned[netip.MustParseAddr(ip)]) == 0 {
					t.Errorf("%s owns %s with no interface", got, ip)
				}
			}
			// Fixed again: the IP is owned as before.
			w.ifaces = nil
			w.publish(t)
			if got := w.owner(t, ip); got != first {
				t.Errorf("after the repair owned by %q, want %s again", got, first)
			}
		})
	}
}

func TestPlanBGP(t *testing.T) {
	const ip = "203.0.113.10"
	bgpWorld := func() *world {
		w := newWorld(3)
		w.ads = nil
		w.pools = append(w.pools, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed"},
			Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.0/24", "2001:db8:113::/64"}}})
		w.peers = []*v1alpha1.BGPPeer{
			{ObjectMeta: metav1.ObjectMeta{Name: "tor-a"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "tor-b"}, Spec: v1alpha1.BGPPeerSpec{NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r2"}}}}},
		}
		w.bgpAds = []*v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "routed"},
			Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"routed"}, Communities: []string{"64497:100", "large:64497:1:2"}, LocalPref: ptr(uint32(150))}}}
		return w
	}
	paths := func(w *world, node string) string {
		var out []string
		for _, p := range bgpOf(w.plan(node)).Paths {
			lp := "-"
			if p.LocalPref != nil {
				lp = fmt.Sprint(*p.LocalPref)
			}
			out = append(out, fmt.Sprintf("%s peers=%v comm=%v large=%v lp=%s", p.Prefix, p.Peers, p.Communities, p.LargeCommunities, lp))
		}
		return strings.Join(out, "; ")
	}
	tests := []struct {
		name  string
		setup func(w *world)
		want  map[string]string // node -> rendered paths
	}{
		{"every node announces a Cluster Service to the peers that select it (ECMP)", func(w *world) {
			w.svc("web", []string{ip}, false, "node1")
		}, map[string]string{
			"node1": "203.0.113.10/32 peers=[tor-a] comm=[64497:100] large=[64497:1:2] lp=150",
			"node2": "203.0.113.10/32 peers=[tor-a tor-b] comm=[64497:100] large=[64497:1:2] lp=150",
			"node3": "203.0.113.10/32 peers=[tor-a] comm=[64497:100] large=[64497:1:2] lp=150",
		}},
		{"Local: only nodes with a ready local endpoint announce", func(w *world) {
			w.svc("web", []string{ip}, true, "node3")
		}, map[string]string{"node1": "", "node2": "", "node3": "203.0.113.10/32 peers=[tor-a] comm=[64497:100] large=[64497:1:2] lp=150"}},
		{"no endpoint: nobody announces", func(w *world) {
			w.svc("web", []string{ip}, false)
		}, map[string]string{"node1": "", "node2": "", "node3": ""}},
		{"aggregation lengths per family", func(w *world) {
			w.bgpAds[0].Spec.AggregationLength = ptr(int32(24))
			w.bgpAds[0].Spec.AggregationLengthV6 = ptr(int32(64))
			w.svc("a", []string{ip, "2001:db8:113::7"}, false, "node1")
			w.svc("b", []string{"203.0.113.11"}, false, "node1")
		}, map[string]string{"node1": "203.0.113.0/24 peers=[tor-a] comm=[64497:100] large=[64497:1:2] lp=150; 2001:db8:113::/64 peers=[tor-a] comm=[64497:100] large=[64497:1:2] lp=150"}},
		{"an advertisement limited to one peer and some nodes", func(w *world) {
			w.bgpAds[0].Spec.Peers = []string{"tor-b"}
			w.bgpAds[0].Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r2"}}}
			w.svc("web", []string{ip}, false, "node1")
		}, map[string]string{"node1": "", "node2": "203.0.113.10/32 peers=[tor-b] comm=[64497:100] large=[64497:1:2] lp=150", "node3": ""}},
		{"two advertisements of one prefix: one path each, with its own peers and communities", func(w *world) {
			w.bgpAds[0].Spec.Peers = []string{"tor-a"}
			w.bgpAds = append(w.bgpAds, &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "b-side"},
				Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"routed"}, Peers: []string{"tor-b"}, Communities: []string{"64497:200"}}})
			w.svc("web", []string{ip}, false, "node1")
		}, map[string]string{"node2": "203.0.113.10/32 peers=[tor-a] comm=[64497:100] large=[64497:1:2] lp=150; 203.0.113.10/32 peers=[tor-b] comm=[64497:200] large=[] lp=-"}},
		{"an excluded node announces nothing and has no sessions", func(w *world) {
			w.nodes[0].Labels[LabelExcludeFromLB] = "true"
			w.svc("web", []string{ip}, false, "node1")
		}, map[string]string{"node1": ""}},
		{"an address of a pool no BGPAdvertisement selects is not announced", func(w *world) {
			w.svc("web", []string{"198.51.100.200"}, false, "node1")
		}, map[string]string{"node1": "", "node2": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := bgpWorld()
			tt.setup(w)
			for node, want := range tt.want {
				if got := paths(w, node); got != want {
					t.Errorf("%s announces\n  %s\nwant\n  %s", node, got, want)
				}
			}
		})
	}
	t.Run("reports: one announcer writes each Service's object, listing every announcer", func(t *testing.T) {
		for _, tc := range []struct {
			name         string
			setup        func(w *world)
			nodes, peers []string
		}{
			{"Cluster: every node", func(w *world) { w.svc("web", []string{ip}, false, "node1") },
				[]string{"node1", "node2", "node3"}, []string{"tor-a", "tor-b"}},
			{"Local: the nodes with a ready endpoint", func(w *world) { w.svc("web", []string{ip}, true, "node1", "node3") },
				[]string{"node1", "node3"}, []string{"tor-a"}},
			{"without Leases, a node memberlist declared dead is left out", func(w *world) {
				w.alive = map[string]bool{"node2": true, "node3": true}
				w.svc("web", []string{ip}, false, "node1")
			}, []string{"node2", "node3"}, []string{"tor-a", "tor-b"}},
			{"with Leases, memberlist's view does not count", func(w *world) {
				w.alive = map[string]bool{"node2": true, "node3": true}
				w.renewing = map[string]bool{"node1": true, "node2": true, "node3": true}
				w.svc("web", []string{ip}, false, "node1")
			}, []string{"node1", "node2", "node3"}, []string{"tor-a", "tor-b"}},
			{"with Leases, a node whose Lease went stale is left out", func(w *world) {
				w.renewing = map[string]bool{"node1": true, "node3": true}
				w.svc("web", []string{ip}, false, "node1")
			}, []string{"node1", "node3"}, []string{"tor-a"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := bgpWorld()
				tc.setup(w)
				var reporters []string
				for _, n := range w.nodes {
					if live := w.renewing; live != nil && !live[n.Name] || live == nil && w.alive != nil && !w.alive[n.Name] {
						continue
					}
					r := bgpOf(w.plan(n.Name)).Reports
					if a := r["default/web"]; a != nil {
						reporters = append(reporters, n.Name)
						if !slices.Equal(a.Nodes, tc.nodes) || !slices.Equal(a.Peers, tc.peers) || len(a.IPs) != 1 || a.IPs[0].String() != ip {
							t.Errorf("%s reports %+v, want nodes %v, peers %v, IPs [%s]", n.Name, a, tc.nodes, tc.peers, ip)
						}
					}
				}
				if len(reporters) != 1 || !slices.Contains(tc.nodes, reporters[0]) {
					t.Errorf("reported by %v, want exactly one of %v", reporters, tc.nodes)
				}
			})
		}
	})
	t.Run("with Leases and no L2Advertisement, memberlist's view and reach re-plan nothing", func(t *testing.T) {
		w := bgpWorld()
		w.svc("web", []string{ip}, false, "node1")
		w.alive = map[string]bool{"node1": true, "node2": true, "node3": true}
		w.renewing = map[string]bool{"node1": true, "node2": true, "node3": true}
		p := NewPlanning()
		first := p.Plan(w.snapshot("node1"))
		w.alive = map[string]bool{"node1": true} // a flap: node2 and node3 suspected
		w.reach = map[string]Reach{"node1": {ReachKey(1): ReachLevel(0)}}
		if second := p.Plan(w.snapshot("node1")); !slices.Equal(first.Targets, second.Targets) {
			t.Error("a change of memberlist's view or reach alone re-planned")
		}
		w.renewing = map[string]bool{"node1": true, "node3": true}
		if third := p.Plan(w.snapshot("node1")); slices.Equal(first.Targets, third.Targets) {
			t.Error("a Lease gone stale did not re-plan")
		}
	})
	t.Run("sessions: the peers whose node selectors select the node", func(t *testing.T) {
		w := bgpWorld()
		for node, want := range map[string][]string{"node1": {"tor-a"}, "node2": {"tor-a", "tor-b"}} {
			var got []string
			for _, p := range bgpOf(w.plan(node)).Peers {
				got = append(got, p.Name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s peers %v, want %v", node, got, want)
			}
		}
	})
}

// A warning is reported once while it lasts; after it went away, its return is reported again.
func TestWarningsRecurAfterAFix(t *testing.T) {
	down := Warning{Kind: "Service", Namespace: "default", Name: "web", Reason: "CannotAnnounce", Message: "eth0 down"}
	other := Warning{Kind: "L2Advertisement", Name: "all", Reason: "InterfaceMissing", Message: "no bond7"}
	seen := warnings{}
	for i, step := range []struct {
		plan, want []Warning
	}{
		{[]Warning{down, other}, []Warning{down, other}},
		{[]Warning{down, other}, nil}, // still there: not again
		{[]Warning{other}, nil},       // fixed
		{[]Warning{down, other}, []Warning{down}},
	} {
		if got := seen.fresh(step.plan); !slices.Equal(got, step.want) {
			t.Errorf("step %d: reported %v, want %v", i, got, step.want)
		}
	}
}

// Overlapping pools: the address belongs to the oldest pool (the controller's precedence), in
// every order the informer may list the pools in, so the announcement does not flip between
// L2, BGP and none from one sync to the next.
func TestPlanOverlappingPoolsInEveryOrder(t *testing.T) {
	const ip = "198.51.100.210"
	at := func(name string, minute int, addrs string) *v1alpha1.IPPool {
		return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC))},
			Spec: v1alpha1.IPPoolSpec{Addresses: []string{addrs}}}
	}
	pools := []*v1alpha1.IPPool{
		at("young-l2", 3, "198.51.100.200-198.51.100.220"),
		at("old-bgp", 1, "198.51.100.210/32"),
		at("same-minute-b", 2, "198.51.100.0/24"),
		at("same-minute-a", 2, "198.51.100.208/29"),
	}
	// .210: old-bgp is the oldest pool holding it; .209: same-minute-a, as old as
	// same-minute-b and first by name.
	const want = "L2 map[198.51.100.209:[eth0]], BGP 1 paths"
	for perm := range permutations(len(pools)) {
		w := newWorld(1)
		w.pools = nil
		for _, i := range perm {
			w.pools = append(w.pools, pools[i])
		}
		w.ads[0].Spec.IPPools = []string{"young-l2", "same-minute-a"}
		w.bgpAds = []*v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"old-bgp"}}}}
		w.peers = []*v1alpha1.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "tor"}}}
		w.svc("web", []string{ip}, false, "node1")
		w.svc("other", []string{"198.51.100.209"}, false, "node1")
		p := w.plan("node1")
		got := fmt.Sprintf("L2 %v, BGP %d paths", l2Of(p).Owned, len(bgpOf(p).Paths))
		if got != want {
			t.Errorf("pools in order %v: %s, want %s", perm, got, want)
		}
	}
}

// permutations yields every order of 0..n-1.
func permutations(n int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		var rec func(prefix, rest []int) bool
		rec = func(prefix, rest []int) bool {
			if len(rest) == 0 {
				return yield(slices.Clone(prefix))
			}
			for i := range rest {
				next := append(slices.Clone(rest[:i]), rest[i+1:]...)
				if !rec(append(prefix, rest[i]), next) {
					return false
				}
			}
			return true
		}
		rec(nil, func() []int {
			s := make([]int, n)
			for i := range s {
				s[i] = i
			}
			return s
		}())
	}
}

// An address a Service keeps after its pool shrank is announced as the pool's, by the pool's
// advertisements, as long as the controller lists it in the pool's status; an address no pool
// claims is not announced (the controller's condition says so).
func TestPlanAnnouncesAddressesRetainedByAShrunkPool(t *testing.T) {
	const ip = "198.51.100.190" // below the world's pool (200-250)
	w := newWorld(1)
	w.ads[0].Spec.IPPools = []string{"lan"}
	w.svc("web", []string{ip}, false, "node1")
	if p := w.plan("node1"); len(l2Of(p).Owned) != 0 {
		t.Fatalf("an address no pool claims: announced %v", l2Of(p).Owned)
	}
	w.pools[0].Status.RetainedAddresses = []string{ip}
	p := w.plan("node1")
	if got := l2Of(p).Owned[netip.MustParseAddr(ip)]; !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("an address the shrunk pool retains: announced on %v, want eth0", got)
	}
	// A pool of higher precedence containing the address wins over the retaining one.
	w.pools = append(w.pools, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "newer-bgp-only", CreationTimestamp: metav1.Now()},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.190/32"}}})
	if p := w.plan("node1"); len(l2Of(p).Owned) != 0 {
		t.Errorf("the address is in a pool again (one no L2Advertisement selects): announced %v", l2Of(p).Owned)
	}
}

func l2Of(p Plan) *L2Target   { return TargetOf[*L2Target](p) }
func bgpOf(p Plan) *BGPTarget { return TargetOf[*BGPTarget](p) }
