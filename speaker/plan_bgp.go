package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
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

// BGPTarget is what this node announces in BGP.
type BGPTarget struct {
	// Peers are the BGPPeers this node has sessions with.
	Peers []*v1alpha1.BGPPeer
	// Paths are the paths it announces.
	Paths []BGPPath
	// Services holds, per Service key, what this node announces of it.
	Services map[string]*Announced
	// Reports are the Services this node reports for every node that announces them (one
	// ServiceAnnouncement each, see bgpReports), by Service key.
	Reports map[string]*Announced
}

func (*BGPTarget) Mode() v1alpha1.AnnouncementMode    { return v1alpha1.AnnouncementBGP }
func (t *BGPTarget) Announced() map[string]*Announced { return t.Services }
func (t *BGPTarget) Reported() map[string]*Announced  { return t.Reports }
func (*BGPTarget) Where(a *Announced) string          { return fmt.Sprintf("to peers %v", a.Peers) }

type bgpPlanner struct{}

// Plan computes this node's BGP target: the peers whose node selectors select this node, and,
// for each address of a Service whose pool a BGPAdvertisement selects, a path to the
// advertisement's peers — when this node is eligible (selected by the advertisement, not
// excluded, and with a ready endpoint: a local one for externalTrafficPolicy Local, any for
// Cluster). Every eligible node announces, so routers spread traffic over them (ECMP).
// Liveness needs no memberlist here: a dead node's sessions drop and take its paths along.
func (bgpPlanner) Plan(s *Input, p *Plan) Target {
	t := &BGPTarget{Services: map[string]*Announced{}, Reports: map[string]*Announced{}}
	self, pools, endpoints := s.Self, s.Pools, s.Serving
	if self == nil || config.Excluded(self) {
		return t
	}
	peerSels := make([]peerSelection, 0, len(s.Peers))
	for _, peer := range s.Peers {
		sels, err := config.PeerNodeSelectors(peer)
		if err != nil {
			p.Warnings = append(p.Warnings, Warning{Kind: "BGPPeer", Name: peer.Name, Reason: "InvalidSelector", Message: err.Error()})
			continue
		}
		peerSels = append(peerSels, peerSelection{peer.Name, sels})
		if config.MatchesAny(sels, self) {
			t.Peers = append(t.Peers, peer)
		}
	}
	if len(t.Peers) == 0 {
		return t
	}
	peerNames := make([]string, len(t.Peers))
	for i, peer := range t.Peers {
		peerNames[i] = peer.Name
	}
	ads, invalid := config.CompileBGPAds(s.BGPAds)
	p.warnInvalid(invalid)
	if len(ads) == 0 {
		return t
	}
	type pathKey struct {
		prefix netip.Prefix
		ad     string
	}
	paths := map[pathKey]*BGPPath{}
	for svc := range s.handled {
		svcKey := config.ServiceKey(svc.Namespace, svc.Name)
		ready, hasEndpoint := endpoints[svcKey]
		if !hasEndpoint || (svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !ready[s.Node]) {
			continue
		}
		for _, ip := range config.IngressIPs(svc) {
			pl := pools.Of(ip)
			if pl == nil {
				continue
			}
			for _, ad := range ads {
				if !ad.SelectsPool(pl) || !ad.SelectsNode(self) {
					continue
				}
				peers := intersect(ad.Peers, peerNames)
				if ad.Peers == nil {
					peers = peerNames
				}
				if len(peers) == 0 {
					continue
				}
				// One path per (prefix, advertisement): each peer gets the attributes of the
				// advertisements that select it; the bgp package merges those per peer.
				key := pathKey{ad.Prefix(ip), ad.Name}
				path := paths[key]
				if path == nil {
					path = &BGPPath{Prefix: key.prefix, LocalPref: ad.LocalPref}
					paths[key] = path
				}
				path.Peers = append(path.Peers, peers...)
				path.Communities = append(path.Communities, ad.Communities...)
				path.LargeCommunities = append(path.LargeCommunities, ad.LargeCommunities...)
				path.Services = append(path.Services, svcKey)
				a := t.Services[svcKey]
				if a == nil {
					a = &Announced{Namespace: svc.Namespace, Name: svc.Name}
					t.Services[svcKey] = a
				}
				if !slices.Contains(a.IPs, ip) {
					a.IPs = append(a.IPs, ip)
				}
				a.Peers = dedup(append(a.Peers, peers...))
			}
		}
	}
	for _, a := range t.Services {
		slices.SortFunc(a.IPs, netip.Addr.Compare)
	}
	t.Reports = bgpReports(s, ads, peerSels, t.Services)
	for _, path := range paths {
		path.Peers = dedup(path.Peers)
		path.Communities = dedup(path.Communities)
		path.LargeCommunities = dedup(path.LargeCommunities)
		path.Services = dedup(path.Services)
		t.Paths = append(t.Paths, *path)
	}
	slices.SortFunc(t.Paths, func(a, b BGPPath) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		if c := a.Prefix.Bits() - b.Prefix.Bits(); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(a.Peers, ","), strings.Join(b.Peers, ","))
	})
	return t
}
