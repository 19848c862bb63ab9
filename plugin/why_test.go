package plugin

import (
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWhy(t *testing.T) {
	l2 := v1alpha1.AnnouncementL2
	no := false
	cases := []struct {
		name    string
		setup   func(st *State)
		verdict string
		want    []string // substrings of the findings' problems and fixes, in order
	}{{
		name: "served",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10"))}
			st.Announcements = []v1alpha1.ServiceAnnouncement{announced("shop", "a", "n1", l2, "198.51.100.10")}
		},
		verdict: VerdictServed,
	}, {
		name: "no pool at all",
		setup: func(st *State) {
			st.Pools = nil
			st.Services = []corev1.Service{svc("shop", "a", 1)}
		},
		verdict: VerdictPending,
		want:    []string{"there is no IPPool", "create an IPPool"},
	}, {
		name: "requested pool missing",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1, withAnnotation("ironlb.io/pool", "gold"))}
		},
		verdict: VerdictPending,
		want:    []string{`pool "gold", which does not exist (pools: web)`, "create IPPool gold"},
	}, {
		name: "auto-assign off and restricted",
		setup: func(st *State) {
			st.Pools[0].Spec.AutoAssign = &no
			p := pool("team", 5, "203.0.113.0/30")
			p.Spec.Allocation = &v1alpha1.IPPoolAllocation{Namespaces: []string{"team"}}
			st.Pools = append(st.Pools, p)
			st.Services = []corev1.Service{svc("shop", "a", 1)}
		},
		verdict: VerdictPending,
		want:    []string{`pool team does not admit this service: namespace "shop" is not one of ["team"]`, "pool web has autoAssign false"},
	}, {
		name: "overlapping pool requested",
		setup: func(st *State) {
			st.Pools = append(st.Pools, pool("late", 9, "198.51.100.11/32"))
			st.Services = []corev1.Service{svc("shop", "a", 1, withAnnotation("ironlb.io/pool", "late"))}
		},
		verdict: VerdictPending,
		want:    []string{`pool "late" is disabled: it overlaps the older pool "web"`, "remove the common addresses"},
	}, {
		name: "exhausted",
		setup: func(st *State) {
			st.Services = []corev1.Service{
				svc("shop", "a", 1, withIPs("198.51.100.10")), svc("shop", "b", 2, withIPs("198.51.100.11")), svc("shop", "c", 3)}
		},
		verdict: VerdictPending,
		want:    []string{`pool "web" has no free IPv4 address`, "add addresses"},
	}, {
		name: "requested IP held",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10")), svc("shop", "b", 2, withAnnotation("ironlb.io/ips", "198.51.100.10"))}
		},
		verdict: VerdictPending,
		want:    []string{"198.51.100.10 is held by shop/a", "sharing-key"},
	}, {
		name: "requested IP is a node's",
		setup: func(st *State) {
			st.Nodes[0].Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.11"}}
			st.Services = []corev1.Service{svc("shop", "a", 1, withAnnotation("ironlb.io/ips", "198.51.100.11"))}
		},
		verdict: VerdictPending,
		want:    []string{"198.51.100.11 is reserved: the InternalIP of node n1", "request another address"},
	}, {
		name: "the API server's address is skipped",
		setup: func(st *State) {
			st.APIServerSlices = []discoveryv1.EndpointSlice{{Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.51.100.10"}}}}}
			st.Services = []corev1.Service{svc("shop", "a", 1)}
		},
		verdict: VerdictPending,
		want:    []string{"the controller would give the Service 198.51.100.11 but its status shows <pending>"},
	}, {
		name: "requested IP outside pools",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.9" })}
		},
		verdict: VerdictPending,
		want:    []string{"192.0.2.9 is in no IPPool", "add it to an IPPool"},
	}, {
		name: "sharing conflict on a port",
		setup: func(st *State) {
			st.Services = []corev1.Service{
				svc("shop", "a", 1, withIPs("198.51.100.10"), withAnnotation("ironlb.io/sharing-key", "k")),
				svc("shop", "b", 2, withAnnotation("ironlb.io/sharing-key", "k"), withAnnotation("ironlb.io/ips", "198.51.100.10"))}
		},
		verdict: VerdictPending,
		want:    []string{"198.51.100.10 cannot be shared", "no (protocol, port) in common"},
	}, {
		name: "malformed annotation",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1, withAnnotation("ironlb.io/ips", "nope"))}
		},
		verdict: VerdictPending,
		want:    []string{`annotation ironlb.io/ips: "nope" is not an IP address`},
	}, {
		name: "dual-stack without IPv6 addresses",
		setup: func(st *State) {
			st.Pools[0].Spec.Addresses = []string{"198.51.100.10/31"}
			st.Services = []corev1.Service{svc("shop", "a", 1, dualStack)}
		},
		verdict: VerdictPending,
		want:    []string{"no auto-assign pool admitting this service has IPv6 addresses", "add IPv6 addresses"},
	}, {
		name: "prefer dual-stack left without IPv6",
		setup: func(st *State) {
			st.Services = []corev1.Service{
				svc("shop", "x", 0, withIPs("2001:db8::10"), func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }),
				svc("shop", "y", 0, withIPs("2001:db8::11"), func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }),
				svc("shop", "a", 1, preferDualStack, withIPs("198.51.100.10"))}
			st.Announcements = []v1alpha1.ServiceAnnouncement{announced("shop", "a", "n1", l2, "198.51.100.10")}
		},
		verdict: VerdictPartlyServed,
		want:    []string{"no IPv6 address (ipFamilyPolicy PreferDualStack goes on without it)", `pool "web" has no free IPv6 address`},
	}, {
		name: "not announced: no advertisement",
		setup: func(st *State) {
			st.L2Ads = nil
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10"))}
		},
		verdict: VerdictPartlyServed,
		want:    []string{"no L2Advertisement or BGPAdvertisement selects pool web", "spec.ipPools: [web]"},
	}, {
		name: "retained by a shrunk pool",
		setup: func(st *State) {
			st.Pools[0].Spec.Addresses = []string{"198.51.100.11/32"}
			st.Pools[0].Status.RetainedAddresses = []string{"198.51.100.10"}
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10"))}
		},
		verdict: VerdictPartlyServed,
		want:    []string{"no node announces 198.51.100.10 by L2, although n1, n2 may"},
	}, {
		name: "not announced: no node eligible",
		setup: func(st *State) {
			st.L2Ads[0].Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"edge": "true"}}}
			st.Nodes = append(st.Nodes, node("n3", map[string]string{"edge": "true", corev1.LabelNodeExcludeBalancers: ""}))
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10"))}
		},
		verdict: VerdictPartlyServed,
		want:    []string{"no node may announce 198.51.100.10 by L2: the nodeSelectors [edge=true] match none of n1, n2; n3 carry the label"},
	}, {
		name: "local endpoints on ineligible nodes",
		setup: func(st *State) {
			st.L2Ads[0].Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"edge": "true"}}}
			st.Nodes[0].Labels = map[string]string{"edge": "true"}
			st.Services = []corev1.Service{svc("shop", "a", 1, local, withIPs("198.51.100.10"))}
			st.EndpointSlices = append(st.EndpointSlices, endpoints("shop", "a", true, "n2"))
		},
		verdict: VerdictPartlyServed,
		want:    []string{"externalTrafficPolicy Local: the ready endpoints are on n2, and none of those nodes may announce by L2 (eligible: n1)"},
	}, {
		name: "eligible but no speaker announces",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10"))}
		},
		verdict: VerdictPartlyServed,
		want:    []string{"no node announces 198.51.100.10 by L2, although n1, n2 may", "kubectl -n ironlb-system get pods"},
	}, {
		name: "BGP session down",
		setup: func(st *State) {
			st.L2Ads = nil
			st.BGPAds = []v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "b"}}}
			st.Peers = []v1alpha1.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "router"}, Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64496, MyASN: 64500}}}
			st.Sessions = []v1alpha1.BGPSessionState{session("n1", "router", v1alpha1.BGPStateEstablished, ""), session("n2", "router", v1alpha1.BGPStateActive, "connection refused")}
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10"))}
			st.EndpointSlices = []discoveryv1.EndpointSlice{endpoints("shop", "a", true, "n1")}
			st.Announcements = []v1alpha1.ServiceAnnouncement{announced("shop", "a", "n1", v1alpha1.AnnouncementBGP, "198.51.100.10")}
		},
		verdict: VerdictPartlyServed,
		want:    []string{"BGP session from node n2 to peer router (192.0.2.1) is Active: connection refused"},
	}, {
		name: "BGP without endpoints",
		setup: func(st *State) {
			st.L2Ads = nil
			st.BGPAds = []v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: v1alpha1.BGPAdvertisementSpec{Peers: []string{"core"}}}}
			st.Services = []corev1.Service{svc("shop", "a", 1, withIPs("198.51.100.10"))}
		},
		verdict: VerdictPartlyServed,
		want:    []string{"the Service has no ready endpoint, and BGP withdraws such addresses"},
	}, {
		name: "other class",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1, func(s *corev1.Service) { c := "other.io/lb"; s.Spec.LoadBalancerClass = &c })}
		},
		verdict: VerdictNotOurs,
		want:    []string{`spec.loadBalancerClass is "other.io/lb"`},
	}, {
		name: "status behind the controller",
		setup: func(st *State) {
			st.Services = []corev1.Service{svc("shop", "a", 1)}
		},
		verdict: VerdictPending,
		want:    []string{"the controller would give the Service 198.51.100.10 but its status shows <pending>"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := baseState()
			tc.setup(st)
			target := st.Services[len(st.Services)-1]
			ex, err := Why(st, target.Namespace, target.Name)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := WriteWhy(&b, ex); err != nil {
				t.Fatal(err)
			}
			text := b.String()
			t.Log("\n" + text)
			if ex.Verdict != tc.verdict {
				t.Errorf("verdict %s, want %s\n%s", ex.Verdict, tc.verdict, text)
			}
			if tc.verdict == VerdictServed && len(ex.Findings) > 0 {
				t.Errorf("served with findings:\n%s", text)
			}
			rest := text
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("missing (in order) %q in\n%s", w, text)
					continue
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestWhyUnknownService(t *testing.T) {
	if _, err := Why(baseState(), "shop", "nope"); err == nil || !strings.Contains(err.Error(), "shop/nope not found") {
		t.Fatalf("err = %v", err)
	}
}
