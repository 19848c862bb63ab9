package speaker

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// BGPPath is one prefix this node announces to some peers, with its attributes.
type BGPPath struct {
	Prefix           netip.Prefix
	Peers            []string // BGPPeer names, sorted
	Communities      []string // "A:B", sorted
	LargeCommunities []string // "A:B:C" (without the "large:" prefix), sorted
	LocalPref        *uint32
	Services         []string // Service keys that hold addresses in Prefix, sorted
	// One BGPPath comes from one BGPAdvertisement: a prefix that two advertisements select
	// appears twice, each with its own peers and attributes.
}

// planBGP adds the BGP part of the plan: the peers whose node selectors select this node, and,
// for each address of a Service whose pool a BGPAdvertisement selects, a path to the
// advertisement's peers — when this node is eligible (selected by the advertisement, not
// excluded, and with a ready endpoint: a local one for externalTrafficPolicy Local, any for
// Cluster). Every eligible node announces, so routers spread traffic over them (ECMP).
// Liveness needs no memberlist here: a dead node's sessions drop and take its paths along.
func planBGP(s *Snapshot, p *Plan, pools []pool, endpoints map[string]map[string]bool) {
	self := nodeByName(s.Nodes, s.Node)
	if self == nil || excluded(self) {
		return
	}
	for _, peer := range s.Peers {
		sels, err := selectors(peer.Spec.NodeSelectors)
		if err != nil {
			p.Warnings = append(p.Warnings, Warning{Kind: "BGPPeer", Name: peer.Name, Reason: "InvalidSelector", Message: err.Error()})
			continue
		}
		if matchesAny(sels, self) {
			p.Peers = append(p.Peers, peer)
		}
	}
	if len(p.Peers) == 0 {
		return
	}
	peerNames := make([]string, len(p.Peers))
	for i, peer := range p.Peers {
		peerNames[i] = peer.Name
	}
	ads := compileBGPAds(s.BGPAds, p)
	type pathKey struct {
		prefix netip.Prefix
		ad     string
	}
	paths := map[pathKey]*BGPPath{}
	for _, svc := range s.Services {
		if s.Handles != nil && !s.Handles(svc) {
			continue
		}
		svcKey := svc.Namespace + "/" + svc.Name
		ready, hasEndpoint := endpoints[svcKey]
		if !hasEndpoint || (svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !ready[s.Node]) {
			continue
		}
		for _, ip := range ingressAddrs(svc) {
			pl := poolOf(pools, ip)
			if pl == nil {
				continue
			}
			for _, ad := range ads {
				if !ad.selectsPool(pl) || !ad.selectsNode(self) {
					continue
				}
				peers := intersect(ad.peers, peerNames)
				if ad.peers == nil {
					peers = peerNames
				}
				if len(peers) == 0 {
					continue
				}
				// One path per (prefix, advertisement): each peer gets the attributes of the
				// advertisements that select it; the bgp package merges those per peer.
				key := pathKey{ad.prefix(ip), ad.name}
				path := paths[key]
				if path == nil {
					path = &BGPPath{Prefix: key.prefix, LocalPref: ad.localPref}
					paths[key] = path
				}
				path.Peers = append(path.Peers, peers...)
				path.Communities = append(path.Communities, ad.communities...)
				path.LargeCommunities = append(path.LargeCommunities, ad.large...)
				path.Services = append(path.Services, svcKey)
				a := p.BGPServices[svcKey]
				if a == nil {
					a = &Announced{Namespace: svc.Namespace, Name: svc.Name}
					p.BGPServices[svcKey] = a
				}
				if !slices.Contains(a.IPs, ip) {
					a.IPs = append(a.IPs, ip)
				}
				a.Peers = dedup(append(a.Peers, peers...))
			}
		}
	}
	for _, a := range p.BGPServices {
		slices.SortFunc(a.IPs, netip.Addr.Compare)
	}
	for _, path := range paths {
		path.Peers = dedup(path.Peers)
		path.Communities = dedup(path.Communities)
		path.LargeCommunities = dedup(path.LargeCommunities)
		path.Services = dedup(path.Services)
		p.BGP = append(p.BGP, *path)
	}
	slices.SortFunc(p.BGP, func(a, b BGPPath) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		if c := a.Prefix.Bits() - b.Prefix.Bits(); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(a.Peers, ","), strings.Join(b.Peers, ","))
	})
}

type bgpAd struct {
	l2Ad                 // pools and node selectors, as for L2
	peers       []string // nil: all
	communities []string
	large       []string
	localPref   *uint32
	aggV4       int
	aggV6       int
}

func compileBGPAds(in []*v1alpha1.BGPAdvertisement, p *Plan) []bgpAd {
	out := make([]bgpAd, 0, len(in))
	for _, ad := range in {
		c := bgpAd{l2Ad: l2Ad{name: ad.Name, pools: ad.Spec.IPPools}, peers: ad.Spec.Peers, localPref: ad.Spec.LocalPref, aggV4: 32, aggV6: 128}
		var err error
		if c.poolSelectors, err = selectors(ad.Spec.IPPoolSelectors); err == nil {
			c.nodeSelectors, err = selectors(ad.Spec.NodeSelectors)
		}
		if err != nil {
			p.Warnings = append(p.Warnings, Warning{Kind: "BGPAdvertisement", Name: ad.Name, Reason: "InvalidSelector", Message: err.Error()})
			continue
		}
		for _, comm := range ad.Spec.Communities {
			if large, ok := strings.CutPrefix(comm, "large:"); ok {
				c.large = append(c.large, large)
			} else {
				c.communities = append(c.communities, comm)
			}
		}
		if ad.Spec.AggregationLength != nil {
			c.aggV4 = int(*ad.Spec.AggregationLength)
		}
		if ad.Spec.AggregationLengthV6 != nil {
			c.aggV6 = int(*ad.Spec.AggregationLengthV6)
		}
		out = append(out, c)
	}
	return out
}

// prefix is the announced prefix of ip: the address itself, or its aggregate. A length outside
// the family's bits (admission refuses them) announces the address itself.
func (a *bgpAd) prefix(ip netip.Addr) netip.Prefix {
	bits := a.aggV4
	if ip.Is6() {
		bits = a.aggV6
	}
	if bits < 1 || bits > ip.BitLen() {
		bits = ip.BitLen()
	}
	return netip.PrefixFrom(ip, bits).Masked()
}

func nodeByName(nodes []*corev1.Node, name string) *corev1.Node {
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func matchesAny(sels []labels.Selector, n *corev1.Node) bool {
	return len(sels) == 0 || slices.ContainsFunc(sels, func(s labels.Selector) bool { return s.Matches(labels.Set(n.Labels)) })
}
