package speaker

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
)

// L2Target is what this node announces in layer 2.
type L2Target struct {
	// Owned maps each IP this node owns to the interfaces it answers on.
	Owned map[netip.Addr][]string
	// Services holds, per Service key, what this node announces of it.
	Services map[string]*Announced
	// Reach is this node's L2 reach, to publish (memberlist metadata) for the others' election.
	Reach Reach
}

func (*L2Target) Mode() v1alpha1.AnnouncementMode    { return v1alpha1.AnnouncementL2 }
func (t *L2Target) Announced() map[string]*Announced { return t.Services }
func (t *L2Target) Reported() map[string]*Announced  { return t.Services }
func (*L2Target) Where(a *Announced) string          { return fmt.Sprintf("on %v", a.Interfaces) }

// l2Planner plans layer 2 (planL2). It re-plans every Service when any changed (an IP's owner
// depends on the other Services that hold it or share a group with it, and this node's reach on
// every address); an unchanged Service keeps its Announced, and a plan in which nothing
// changed keeps the target.
type l2Planner struct {
	target   *L2Target
	warnings []Warning
}

func (p *l2Planner) Plan(in *Input, ch *Changes, plan *Plan) Target {
	if p.target != nil && !ch.All && len(ch.Services) == 0 {
		plan.Warnings = append(plan.Warnings, p.warnings...)
		return p.target
	}
	n := len(plan.Warnings)
	t := planL2(in, plan)
	p.warnings = slices.Clone(plan.Warnings[n:])
	if old := p.target; old != nil {
		same := len(t.Services) == len(old.Services)
		for key, a := range t.Services {
			if o := old.Services[key]; sameAnnounced(o, a) {
				t.Services[key] = o
			} else {
				same = false
			}
		}
		if same && maps.EqualFunc(t.Owned, old.Owned, slices.Equal) && maps.Equal(t.Reach, old.Reach) {
			return old
		}
	}
	p.target = t
	return t
}

// planL2 computes this node's layer-2 target: for each IP of each Service of ours, the candidate nodes are those selected by an
// L2Advertisement of the IP's pool, not excluded and alive; for externalTrafficPolicy Local,
// only those with a ready local endpoint. A Service without any endpoint is still announced
// (by one of all eligible nodes), so that clients are refused at once by the forwarding rules
// instead of waiting seconds for an ARP answer that never comes. Of those, only the nodes
// with the best reach (ReachLevel, as each published it) remain: a node that cannot answer
// for the IP is never elected, and one off the IP's subnet only when no candidate is on it.
// The owner is l2.Owner over the candidates, keyed by the smallest IP of the
// IP's group — the IPs connected through Services that hold them (a shared IP, both families
// of a Service) — so a group stays on one node whenever the candidates agree.
func planL2(s *Input, p *Plan) *L2Target {
	t := &L2Target{Owned: map[netip.Addr][]string{}, Services: map[string]*Announced{}, Reach: Reach{}}
	pools := s.Pools
	ads, invalid := config.CompileL2Ads(s.L2Ads)
	p.warnInvalid(invalid)
	if len(ads) == 0 {
		return t // no address has a candidate: nothing to own, reach or warn about
	}
	nodes := map[string]*corev1.Node{}
	for _, n := range s.Nodes {
		nodes[n.Name] = n
	}

	// Per IP: the candidate nodes and the Services holding it, and the ads that apply.
	type ipInfo struct {
		candidates map[string]bool
		services   []*corev1.Service
		patterns   []string
		pool       *config.Pool
	}
	ips := map[netip.Addr]*ipInfo{}
	groups := newUnionFind()
	for svc := range s.handled {
		addrs := config.IngressIPs(svc)
		ready, hasEndpoint := s.serving(config.ServiceKey(svc.Namespace, svc.Name))
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
			if old, ok := t.Reach[key]; !ok || lvl < old {
				t.Reach[key] = lvl
			}
		}
	}
	level := func(node string, key ReachKey) ReachLevel {
		lvl, ok := s.Reach[node][key]
		if !ok {
			lvl = ReachSubnet
		}
		if own, ok := t.Reach[key]; node == s.Node && ok && own < lvl {
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
		t.Owned[ip] = ifaces
		for _, svc := range info.services {
			key := svc.Namespace + "/" + svc.Name
			a := t.Services[key]
			if a == nil {
				a = &Announced{Namespace: svc.Namespace, Name: svc.Name}
				t.Services[key] = a
			}
			a.IPs = append(a.IPs, ip)
			a.Interfaces = dedup(append(a.Interfaces, ifaces...))
		}
	}
	for _, a := range t.Services {
		slices.SortFunc(a.IPs, netip.Addr.Compare)
	}
	return t
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
