// Package speaker runs on every node: it watches Services, EndpointSlices, Nodes and ironlb's
// configuration, asks the pure planner (Compute) what this node must announce, and drives the
// layer-2 announcer, the BGP speaker and the nftables rules with it, writing one
// ServiceAnnouncement per Service and mode it announces and one BGPSessionState per session.
package speaker

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// LabelExcludeFromLB marks nodes that must not carry load-balancer traffic; such nodes never
// announce.
const LabelExcludeFromLB = config.LabelExcludeFromLB

// Snapshot is everything the planner reads: plain values copied from the informers' caches,
// this node's interfaces and memberlist's view of which nodes are alive.
type Snapshot struct {
	Node       string           // this node's name
	Interfaces []l2.Interface   // this node's interfaces
	Alive      map[string]bool  // nodes alive in memberlist; nil means "all" (no liveness)
	Reach      map[string]Reach // what each node published of its L2 reach; missing: full
	Handles    func(*corev1.Service) bool
	Nodes      []*corev1.Node
	Services   []*corev1.Service
	Slices     []*discoveryv1.EndpointSlice
	Pools      []*v1alpha1.IPPool
	L2Ads      []*v1alpha1.L2Advertisement
	BGPAds     []*v1alpha1.BGPAdvertisement
	Peers      []*v1alpha1.BGPPeer
}

// Plan is what this node announces.
type Plan struct {
	// L2 maps each IP this node owns to the interfaces it answers on.
	L2 map[netip.Addr][]string
	// Services holds, per Service key (namespace/name), what this node announces of it in L2.
	Services map[string]*Announced
	// Peers are the BGPPeers this node has sessions with; BGP the paths it announces, and
	// BGPServices what it announces per Service key.
	Peers       []*v1alpha1.BGPPeer
	BGP         []BGPPath
	BGPServices map[string]*Announced
	// Reach is this node's L2 reach, to publish (memberlist metadata) for the others' election.
	Reach Reach
	// Warnings report misconfiguration; the rest of the plan is unaffected.
	Warnings []Warning
}

// Announced is what this node announces for one Service in one mode: one
// ServiceAnnouncement.
type Announced struct {
	Namespace, Name string
	IPs             []netip.Addr
	Interfaces      []string // L2
	Peers           []string // BGP
}

// Warning is a misconfiguration to report as a Warning event on Object.
type Warning struct {
	Kind, Namespace, Name string // the object to report on
	Reason, Message       string
}

// warnInvalid reports the configuration objects the model left out.
func (p *Plan) warnInvalid(invalid []config.Invalid) {
	for _, bad := range invalid {
		p.Warnings = append(p.Warnings, Warning{Kind: bad.Kind, Name: bad.Name, Reason: "InvalidSelector", Message: bad.Err.Error()})
	}
}

// Plan computes this node's announcements from a snapshot. It is pure and deterministic.
//
// Layer 2: for each IP of each Service of ours, the candidate nodes are those selected by an
// L2Advertisement of the IP's pool, not excluded and alive; for externalTrafficPolicy Local,
// only those with a ready local endpoint. A Service without any endpoint is still announced
// (by one of all eligible nodes), so that clients are refused at once by the forwarding rules
// instead of waiting seconds for an ARP answer that never comes. Of those, only the nodes
// with the best reach (ReachLevel, as each published it) remain: a node that cannot answer
// for the IP is never elected, and one off the IP's subnet only when no candidate is on it.
// The owner is l2.Owner over the candidates, keyed by the smallest IP of the
// IP's group — the IPs connected through Services that hold them (a shared IP, both families
// of a Service) — so a group stays on one node whenever the candidates agree.
func Compute(s *Snapshot) Plan {
	p := Plan{L2: map[netip.Addr][]string{}, Services: map[string]*Announced{}, BGPServices: map[string]*Announced{}, Reach: Reach{}}
	pools := config.CompilePools(s.Pools)
	ads, invalid := config.CompileL2Ads(s.L2Ads)
	p.warnInvalid(invalid)
	nodes := map[string]*corev1.Node{}
	for _, n := range s.Nodes {
		nodes[n.Name] = n
	}
	endpoints := config.ServingNodes(s.Slices)

	// Per IP: the candidate nodes and the Services holding it, and the ads that apply.
	type ipInfo struct {
		candidates map[string]bool
		services   []*corev1.Service
		patterns   []string
		pool       *config.Pool
	}
	ips := map[netip.Addr]*ipInfo{}
	groups := newUnionFind()
	for _, svc := range s.Services {
		if s.Handles != nil && !s.Handles(svc) {
			continue
		}
		addrs := config.IngressIPs(svc)
		ready, hasEndpoint := endpoints[config.ServiceKey(svc.Namespace, svc.Name)]
		for i, ip := range addrs {
			if i > 0 {
				groups.union(addrs[0], ip)
			}
			info := ips[ip]
			if info == nil {
				info = &ipInfo{candidates: map[string]bool{}}
				ips[ip] = info
				groups.add(ip)
			}
			info.services = append(info.services, svc)
			pool := pools.Of(ip)
			if pool == nil {
				continue
			}
			info.pool = pool
			for _, ad := range ads {
				if !ad.SelectsPool(pool) {
					continue
				}
				info.patterns = append(info.patterns, ad.Interfaces...)
				for name, n := range nodes {
					if !ad.SelectsNode(n) || config.Excluded(n) || (s.Alive != nil && !s.Alive[name]) {
						continue
					}
					// With no endpoint anywhere the IP is still answered, by one node of all
					// eligible ones, whose rules refuse connections at once: an unanswered
					// ARP would make clients hang for seconds instead.
					if hasEndpoint && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !ready[name] {
						continue
					}
					info.candidates[name] = true
				}
			}
		}
	}

	// This node's reach, per (pool, family) of the addresses in use: what it publishes, and
	// (the worse of it and what it published before) what it counts itself at.
	for ip, info := range ips {
		if info.pool == nil || !slices.ContainsFunc(ads, func(ad config.L2Ad) bool { return ad.SelectsPool(info.pool) }) {
			continue
		}
		chosen, missing := l2.ChooseInterfaces(ip, dedup(info.patterns), s.Interfaces)
		if len(missing) > 0 && info.candidates[s.Node] {
			for _, ad := range ads {
				if m := intersect(ad.Interfaces, missing); len(m) > 0 && ad.SelectsPool(info.pool) {
					p.Warnings = append(p.Warnings, Warning{Kind: "L2Advertisement", Name: ad.Name, Reason: "InterfaceMissing",
						Message: fmt.Sprintf("node %s has no interface %s; it answers for %s on %v", s.Node, strings.Join(m, ", "), ip, chosen)})
				}
			}
		}
		if lvl := reachOf(ip, chosen, s.Interfaces); lvl < ReachSubnet {
			key := reachKeyOf(info.pool.Name, ip)
			if old, ok := p.Reach[key]; !ok || lvl < old {
				p.Reach[key] = lvl
			}
		}
	}
	level := func(node string, key ReachKey) ReachLevel {
		lvl, ok := s.Reach[node][key]
		if !ok {
			lvl = ReachSubnet
		}
		if own, ok := p.Reach[key]; node == s.Node && ok && own < lvl {
			lvl = own
		}
		return lvl
	}

	for ip, info := range ips {
		cands := make([]string, 0, len(info.candidates))
		best := ReachNone
		if info.pool != nil {
			key := reachKeyOf(info.pool.Name, ip)
			for n := range info.candidates {
				switch lvl := level(n, key); {
				case lvl > best:
					best, cands = lvl, append(cands[:0], n)
				case lvl == best && lvl > ReachNone:
					cands = append(cands, n)
				}
			}
		}
		if info.candidates[s.Node] && !slices.Contains(cands, s.Node) {
			for _, svc := range info.services {
				p.Warnings = append(p.Warnings, Warning{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Reason: "CannotAnnounce",
					Message: fmt.Sprintf("node %s cannot announce %s (%s); it leaves it to the nodes that can", s.Node, ip, reachProblem(level(s.Node, reachKeyOf(info.pool.Name, ip))))})
			}
		}
		if l2.Owner(groups.find(ip), cands) != s.Node {
			continue
		}
		patterns := dedup(info.patterns)
		ifaces, _ := l2.ChooseInterfaces(ip, patterns, s.Interfaces)
		if len(ifaces) == 0 {
			for _, svc := range info.services {
				p.Warnings = append(p.Warnings, Warning{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Reason: "NoInterface",
					Message: fmt.Sprintf("node %s owns %s but has no interface to announce it on (patterns %v)", s.Node, ip, patterns)})
			}
			continue
		}
		p.L2[ip] = ifaces
		for _, svc := range info.services {
			key := svc.Namespace + "/" + svc.Name
			a := p.Services[key]
			if a == nil {
				a = &Announced{Namespace: svc.Namespace, Name: svc.Name}
				p.Services[key] = a
			}
			a.IPs = append(a.IPs, ip)
			a.Interfaces = dedup(append(a.Interfaces, ifaces...))
		}
	}
	for _, a := range p.Services {
		slices.SortFunc(a.IPs, netip.Addr.Compare)
	}
	planBGP(s, &p, pools, endpoints)
	slices.SortFunc(p.Warnings, func(a, b Warning) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Namespace, b.Namespace),
			strings.Compare(a.Name, b.Name), strings.Compare(a.Message, b.Message))
	})
	p.Warnings = slices.Compact(p.Warnings)
	return p
}

// reachProblem says why a node has the level it has, for a warning.
func reachProblem(lvl ReachLevel) string {
	switch lvl {
	case ReachNone:
		return "no up interface to answer on: none matches the advertisements' interfaces, or they are down"
	case ReachOffSubnet:
		return "no up interface on its subnet, and other nodes have one"
	}
	return "not elected"
}

func dedup(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// unionFind groups IPs; find returns the smallest IP of a group.
type unionFind struct{ parent map[netip.Addr]netip.Addr }

func newUnionFind() *unionFind { return &unionFind{parent: map[netip.Addr]netip.Addr{}} }

func (u *unionFind) add(a netip.Addr) {
	if _, ok := u.parent[a]; !ok {
		u.parent[a] = a
	}
}

func (u *unionFind) find(a netip.Addr) netip.Addr {
	u.add(a)
	for u.parent[a] != a {
		u.parent[a] = u.parent[u.parent[a]]
		a = u.parent[a]
	}
	return a
}

func (u *unionFind) union(a, b netip.Addr) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if rb.Less(ra) {
		ra, rb = rb, ra
	}
	u.parent[rb] = ra // the smaller address is the root
}
