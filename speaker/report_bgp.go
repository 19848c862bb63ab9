package speaker

import (
	"net/netip"
	"slices"

	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// peerSelection is a BGPPeer's name and node selectors.
type peerSelection struct {
	name string
	sels []labels.Selector
}

// bgpNode is a node that may announce for an advertisement, with the peers it would announce
// to.
type bgpNode struct {
	name  string
	peers []string
}

// bgpReport returns the BGP ServiceAnnouncement of a Service this node announces, when this
// node writes it. In BGP every eligible node announces a Service, so one object per (Service,
// node) would make Services times nodes objects, and as many writes on a rollout. Instead each
// Service has one, listing the nodes, written by one of them: its reporter, l2.Owner of the
// nodes keyed by the Service's first address. Every node that announces a Service computes the
// same list from the same caches (the planner is deterministic, and another node's eligibility
// is read from the same objects: its labels, the peers that select it, the advertisements, its
// endpoints), so they agree on the reporter; the others write nothing for it. byAd is
// bgpNodes'; ready the Service's serving nodes.
func bgpReport(s *Input, ads []config.BGPAd, byAd [][]bgpNode, svc *corev1.Service, ready map[string]bool) *Announced {
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	nodes, peerSet := map[string]bool{}, map[string]bool{}
	var ips []netip.Addr
	for _, ip := range config.IngressIPs(svc) {
		pl := s.Pools.Of(ip)
		if pl == nil {
			continue
		}
		for i := range ads {
			if !ads[i].SelectsPool(pl) {
				continue
			}
			for _, n := range byAd[i] {
				if local && !ready[n.name] {
					continue
				}
				nodes[n.name] = true
				for _, p := range n.peers {
					peerSet[p] = true
				}
				if !slices.Contains(ips, ip) {
					ips = append(ips, ip)
				}
			}
		}
	}
	if len(ips) == 0 {
		return nil
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	names := sortedKeys(nodes)
	if l2.Owner(ips[0], names) != s.Node {
		return nil
	}
	return &Announced{Namespace: svc.Namespace, Name: svc.Name, IPs: ips, Nodes: names, Peers: sortedKeys(peerSet)}
}

// bgpNodes returns, per advertisement, the nodes that announce what it selects, with their
// peers. Nodes whose speaker is not running are left out (their sessions drop and take their
// paths along): those whose Lease went stale, or without Leases those memberlist declares
// dead. The Leases, not memberlist's view, because every node must elect the same reporter: all
// read the same Leases, while memberlist's views differ whenever a probe is late (a loaded node
// is suspected and refutes it), and each such difference would rewrite every Service's object
// (its node list and reporter) twice. Nothing else in BGP waits on this answer.
func bgpNodes(s *Input, ads []config.BGPAd, peers []peerSelection) [][]bgpNode {
	byAd := make([][]bgpNode, len(ads))
	alive := s.Renewing
	if alive == nil {
		alive = s.Alive
	}
	for _, n := range s.Nodes {
		if config.Excluded(n) || (alive != nil && !alive[n.Name] && n.Name != s.Node) {
			continue
		}
		var selecting []string
		for _, p := range peers {
			if config.MatchesAny(p.sels, n) {
				selecting = append(selecting, p.name)
			}
		}
		if len(selecting) == 0 {
			continue
		}
		for i := range ads {
			if !ads[i].SelectsNode(n) {
				continue
			}
			to := selecting
			if ads[i].Peers != nil {
				to = intersect(ads[i].Peers, selecting)
			}
			if len(to) > 0 {
				byAd[i] = append(byAd[i], bgpNode{n.Name, to})
			}
		}
	}
	return byAd
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
