package speaker

import (
	"fmt"
	"maps"
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
	// Paths are the paths it announces, sorted by prefix, then peers, then advertisement.
	Paths []*BGPPath
	// Services holds, per Service key, what this node announces of it.
	Services map[string]*Announced
	// Reports are the Services this node reports for every node that announces them (one
	// ServiceAnnouncement each, see bgpReport), by Service key.
	Reports map[string]*Announced

	keys    []pathKey  // the key of each of Paths
	base    *BGPTarget // the target this one was made from by changing the Services in changed
	changed []string
}

func (t *BGPTarget) diff() (Target, []string) {
	if t.base == nil {
		return nil, nil
	}
	return t.base, t.changed
}

func (*BGPTarget) Mode() v1alpha1.AnnouncementMode    { return v1alpha1.AnnouncementBGP }
func (t *BGPTarget) Announced() map[string]*Announced { return t.Services }
func (t *BGPTarget) Reported() map[string]*Announced  { return t.Reports }
func (*BGPTarget) Where(a *Announced) string          { return fmt.Sprintf("to peers %v", a.Peers) }

// pathKey identifies a path: one per (prefix, advertisement).
type pathKey struct {
	prefix netip.Prefix
	ad     int // index in bgpCluster.ads
}

// bgpPlanner computes this node's BGP target: the peers whose node selectors select this node,
// and, for each address of a Service whose pool a BGPAdvertisement selects, a path to the
// advertisement's peers — when this node is eligible (selected by the advertisement, not
// excluded, and with a ready endpoint: a local one for externalTrafficPolicy Local, any for
// Cluster). Every eligible node announces, so routers spread traffic over them (ECMP).
// Liveness needs no memberlist here: a dead node's sessions drop and take their paths along.
//
// It is incremental: what it derives from the cluster-wide inputs (bgpCluster) is computed
// when they change, and each Service's result (bgpResult) when that Service or its serving
// nodes change; the target is assembled from the results, and a result equal to the one before
// keeps its objects, so an unchanged target is the same pointer.
type bgpPlanner struct {
	cl      *bgpCluster
	results map[string]*bgpResult // per Service key; only Services with a result
	paths   map[pathKey]map[string]bool
	target  *BGPTarget
}

// bgpCluster is what the BGP planner derives from the cluster-wide inputs.
type bgpCluster struct {
	target   *BGPTarget // its Peers, and nothing else yet
	ads      []config.BGPAd
	adPeers  [][]string // per ad: the peers this node announces its paths to; nil: no path
	joined   []string   // per ad: adPeers joined, for the order of paths
	byAd     [][]bgpNode
	warnings []Warning
}

// bgpResult is what the BGP planner plans for one Service.
type bgpResult struct {
	announced *Announced // what this node announces of it; nil: nothing
	report    *Announced // its ServiceAnnouncement, when this node reports it
	paths     []pathKey  // the paths holding its addresses
}

func (r *bgpResult) same(o *bgpResult) bool {
	return sameAnnounced(r.announced, o.announced) && sameAnnounced(r.report, o.report) && slices.Equal(r.paths, o.paths)
}

func (p *bgpPlanner) Plan(in *Input, ch *Changes, plan *Plan) Target {
	if ch.All || p.cl == nil {
		p.cl = newBGPCluster(in)
		p.results, p.paths, p.target = map[string]*bgpResult{}, map[pathKey]map[string]bool{}, nil
	}
	plan.Warnings = append(plan.Warnings, p.cl.warnings...)
	if p.target == nil {
		t := *p.cl.target
		t.Services, t.Reports = map[string]*Announced{}, map[string]*Announced{}
		p.target = &t
		if len(p.cl.ads) > 0 {
			for svc := range in.handled {
				p.update(in, config.ServiceKey(svc.Namespace, svc.Name), svc, p.target)
			}
			p.target.Paths, p.target.keys = nil, nil
			p.setPaths(p.target, slices.Collect(maps.Keys(p.paths)))
		}
		return p.target
	}
	if len(p.cl.ads) == 0 || len(ch.Services) == 0 {
		return p.target
	}
	var t *BGPTarget
	var dirty []pathKey
	for key, svc := range ch.Services {
		old, cur := p.results[key], p.cl.plan(in, key, svc)
		if old == nil && cur == nil || old != nil && cur != nil && old.same(cur) {
			continue
		}
		if t == nil {
			t = &BGPTarget{Peers: p.target.Peers, Paths: p.target.Paths, keys: p.target.keys,
				Services: maps.Clone(p.target.Services), Reports: maps.Clone(p.target.Reports), base: p.target}
		}
		t.changed = append(t.changed, key)
		if old != nil {
			dirty = append(dirty, old.paths...)
		}
		if cur != nil {
			dirty = append(dirty, cur.paths...)
		}
		p.set(key, old, cur, t)
	}
	if t == nil {
		return p.target
	}
	p.setPaths(t, dirty)
	p.target = t
	return t
}

// update re-plans one Service (svc nil: gone) into t, leaving t's paths to setPaths.
func (p *bgpPlanner) update(in *Input, key string, svc *corev1.Service, t *BGPTarget) {
	p.set(key, p.results[key], p.cl.plan(in, key, svc), t)
}

// set replaces a Service's result old with cur (either may be nil) in the planner and in t.
func (p *bgpPlanner) set(key string, old, cur *bgpResult, t *BGPTarget) {
	if old != nil {
		for _, k := range old.paths {
			delete(p.paths[k], key)
		}
		delete(p.results, key)
		delete(t.Services, key)
		delete(t.Reports, key)
	}
	if cur == nil {
		return
	}
	if old != nil { // keep the objects that did not change, for the diffs downstream
		if sameAnnounced(old.announced, cur.announced) {
			cur.announced = old.announced
		}
		if sameAnnounced(old.report, cur.report) {
			cur.report = old.report
		}
	}
	p.results[key] = cur
	t.Services[key] = cur.announced
	if cur.report != nil {
		t.Reports[key] = cur.report
	}
	for _, k := range cur.paths {
		if p.paths[k] == nil {
			p.paths[k] = map[string]bool{}
		}
		p.paths[k][key] = true
	}
}

// setPaths rebuilds the paths with the given keys in t (a copy of the previous paths), in order.
func (p *bgpPlanner) setPaths(t *BGPTarget, dirty []pathKey) {
	if len(dirty) == 0 {
		return
	}
	paths, keys := slices.Clone(t.Paths), slices.Clone(t.keys)
	slices.SortFunc(dirty, p.cl.comparePaths)
	dirty = slices.Compact(dirty)
	for _, k := range dirty {
		i, found := slices.BinarySearchFunc(keys, k, p.cl.comparePaths)
		svcs := p.paths[k]
		switch {
		case len(svcs) == 0 && found:
			delete(p.paths, k)
			paths, keys = slices.Delete(paths, i, i+1), slices.Delete(keys, i, i+1)
		case len(svcs) == 0:
			delete(p.paths, k)
		case found:
			paths[i] = p.cl.path(k, svcs)
		default:
			paths, keys = slices.Insert(paths, i, p.cl.path(k, svcs)), slices.Insert(keys, i, k)
		}
	}
	t.Paths, t.keys = paths, keys
}

func newBGPCluster(in *Input) *bgpCluster {
	c := &bgpCluster{target: &BGPTarget{}}
	self := in.Self
	if self == nil || config.Excluded(self) {
		return c
	}
	peerSels := make([]peerSelection, 0, len(in.Peers))
	for _, peer := range in.Peers {
		sels, err := config.PeerNodeSelectors(peer)
		if err != nil {
			c.warnings = append(c.warnings, Warning{Kind: "BGPPeer", Name: peer.Name, Reason: "InvalidSelector", Message: err.Error()})
			continue
		}
		peerSels = append(peerSels, peerSelection{peer.Name, sels})
		if config.MatchesAny(sels, self) {
			c.target.Peers = append(c.target.Peers, peer)
		}
	}
	if len(c.target.Peers) == 0 {
		return c
	}
	peerNames := make([]string, len(c.target.Peers))
	for i, peer := range c.target.Peers {
		peerNames[i] = peer.Name
	}
	ads, invalid := config.CompileBGPAds(in.BGPAds)
	for _, bad := range invalid {
		c.warnings = append(c.warnings, Warning{Kind: bad.Kind, Name: bad.Name, Reason: "InvalidSelector", Message: bad.Err.Error()})
	}
	// A stable order of the ads, whatever the order of the cache's list.
	slices.SortFunc(ads, func(a, b config.BGPAd) int { return strings.Compare(a.Name, b.Name) })
	c.ads = ads
	c.adPeers, c.joined = make([][]string, len(ads)), make([]string, len(ads))
	for i, ad := range ads {
		if !ad.SelectsNode(self) {
			continue
		}
		peers := peerNames
		if ad.Peers != nil {
			peers = intersect(ad.Peers, peerNames)
		}
		if len(peers) > 0 {
			c.adPeers[i] = dedup(peers)
			c.joined[i] = strings.Join(c.adPeers[i], ",")
		}
	}
	c.byAd = bgpNodes(in, ads, peerSels)
	return c
}

// comparePaths orders paths by prefix, then peers, then advertisement.
func (c *bgpCluster) comparePaths(a, b pathKey) int {
	if n := a.prefix.Addr().Compare(b.prefix.Addr()); n != 0 {
		return n
	}
	if n := a.prefix.Bits() - b.prefix.Bits(); n != 0 {
		return n
	}
	if n := strings.Compare(c.joined[a.ad], c.joined[b.ad]); n != 0 {
		return n
	}
	return strings.Compare(c.ads[a.ad].Name, c.ads[b.ad].Name)
}

// path is the path of k, holding the addresses of the Services svcs.
func (c *bgpCluster) path(k pathKey, svcs map[string]bool) *BGPPath {
	ad := &c.ads[k.ad]
	return &BGPPath{Prefix: k.prefix, Peers: c.adPeers[k.ad], Communities: dedup(ad.Communities),
		LargeCommunities: dedup(ad.LargeCommunities), LocalPref: ad.LocalPref, Services: slices.Sorted(maps.Keys(svcs))}
}

// plan plans one Service (nil: gone or not ours): nil when this node neither announces nor
// reports it.
func (c *bgpCluster) plan(in *Input, key string, svc *corev1.Service) *bgpResult {
	if svc == nil || len(c.ads) == 0 {
		return nil
	}
	ready, hasEndpoint := in.serving(key)
	if !hasEndpoint || (svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !ready[in.Node]) {
		return nil
	}
	r := &bgpResult{}
	for _, ip := range config.IngressIPs(svc) {
		pl := in.Pools.Of(ip)
		if pl == nil {
			continue
		}
		for i := range c.ads {
			ad := &c.ads[i]
			if c.adPeers[i] == nil || !ad.SelectsPool(pl) {
				continue
			}
			if k := (pathKey{ad.Prefix(ip), i}); !slices.Contains(r.paths, k) {
				r.paths = append(r.paths, k)
			}
			if r.announced == nil {
				r.announced = &Announced{Namespace: svc.Namespace, Name: svc.Name}
			}
			if !slices.Contains(r.announced.IPs, ip) {
				r.announced.IPs = append(r.announced.IPs, ip)
			}
			r.announced.Peers = dedup(append(r.announced.Peers, c.adPeers[i]...))
		}
	}
	if r.announced == nil {
		return nil
	}
	slices.SortFunc(r.announced.IPs, netip.Addr.Compare)
	slices.SortFunc(r.paths, c.comparePaths)
	r.report = bgpReport(in, c.ads, c.byAd, svc, ready)
	return r
}

// sameAnnounced reports whether a and b (either may be nil) say the same.
func sameAnnounced(a, b *Announced) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a == b || a.Namespace == b.Namespace && a.Name == b.Name && slices.Equal(a.IPs, b.IPs) &&
		slices.Equal(a.Interfaces, b.Interfaces) && slices.Equal(a.Peers, b.Peers) && slices.Equal(a.Nodes, b.Nodes)
}
