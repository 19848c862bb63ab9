package speaker

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Planning, fed a random sequence of changes (Services added, changed and deleted, serving
// nodes changed, and now and then a node, liveness, a pool, an advertisement, a peer or the
// interfaces), in snapshots that list every Service or (as the speaker's) name those that
// changed, plans after each what Compute plans from scratch, on every node, in both modes;
// what is announced of a Service as before is the same Announced as before, and a snapshot
// with no change keeps the targets. The status objects built from its plans are those built
// from scratch.
func TestPlanningIsCompute(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 15))
			w := newPlanWorld()
			planners, status := map[string]*Planning{}, map[string]*statusCache{}
			for _, n := range w.nodes {
				planners[n.Name], status[n.Name] = NewPlanning(), &statusCache{}
			}
			for step := range 250 {
				what, changedKey := w.change(r)
				for _, n := range w.nodes {
					snap := w.snapshot(n.Name, r)
					if r.IntN(3) > 0 { // as the speaker gives it: the Services that changed, looked up
						snap.Changed = map[string]bool{}
						if changedKey != "" && changedKey != "-" {
							snap.Changed[changedKey] = true
						}
						snap.Service = func(key string) *corev1.Service { return w.svcs[key] }
						snap.ListServices, snap.Services = func() []*corev1.Service { return slices.Collect(maps.Values(w.svcs)) }, nil
						serving := snap.Serving
						snap.ServingOf = func(key string) (map[string]bool, bool) { m, ok := serving[key]; return m, ok }
						snap.Serving = nil
					}
					before := planners[n.Name].plan
					got, want := planners[n.Name].Plan(snap), Compute(snap)
					if diff := cmp.Diff(want, got, planCmp...); diff != "" {
						t.Fatalf("step %d (%s), %s: the incremental plan differs from Compute's (-want +got):\n%s", step, what, n.Name, diff)
					}
					byName := func(a, b *v1alpha1.ServiceAnnouncement) int { return strings.Compare(a.Name, b.Name) }
					gotObjs, wantObjs := slices.Clone(status[n.Name].announcements(n.Name, got)), announcements(n.Name, want)
					slices.SortFunc(gotObjs, byName)
					slices.SortFunc(wantObjs, byName)
					if diff := cmp.Diff(wantObjs, gotObjs, cmpopts.EquateEmpty()); diff != "" {
						t.Fatalf("step %d (%s), %s: the status objects differ from those built from scratch (-want +got):\n%s", step, what, n.Name, diff)
					}
					if changedKey == "" || before.Targets == nil {
						continue
					}
					for i, tgt := range got.Targets {
						prev := before.Targets[i]
						if changedKey == "-" && tgt != prev {
							t.Fatalf("step %d (%s), %s: a snapshot without changes gave a new %s target", step, what, n.Name, tgt.Mode())
						}
						for key, a := range tgt.Announced() {
							if old := prev.Announced()[key]; old != nil && old != a && sameAnnounced(old, a) {
								t.Fatalf("step %d (%s), %s: %s of unchanged %s is a new object", step, what, n.Name, tgt.Mode(), key)
							}
						}
					}
				}
			}
		})
	}
}

var planCmp = []cmp.Option{cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(BGPTarget{}),
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
	cmp.Comparer(func(a, b *v1alpha1.BGPPeer) bool { return a.Name == b.Name && a.Generation == b.Generation })}

// planWorld is a cluster whose objects change as informers deliver them: a change is a new
// object, never an edit of one a snapshot holds.
type planWorld struct {
	*world
	svcs    map[string]*corev1.Service
	serving map[string]map[string]bool
}

var planIPs = []string{"198.51.100.200", "198.51.100.201", "198.51.100.202", "2001:db8:100::200",
	"203.0.113.10", "203.0.113.11", "203.0.113.40", "2001:db8:113::7", "192.0.2.1"}

func newPlanWorld() *planWorld {
	w := &planWorld{world: newWorld(4), svcs: map[string]*corev1.Service{}, serving: map[string]map[string]bool{}}
	w.pools = append(w.pools, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.0/24", "2001:db8:113::/64"}}})
	w.ads[0].Spec.IPPools = []string{"lan"}
	w.peers = []*v1alpha1.BGPPeer{
		{ObjectMeta: metav1.ObjectMeta{Name: "tor-a"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "tor-b"}, Spec: v1alpha1.BGPPeerSpec{NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r2"}}}}},
	}
	w.bgpAds = []*v1alpha1.BGPAdvertisement{
		{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"routed"}, Communities: []string{"64497:100"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b-side", Generation: 1}, Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"routed"}, Peers: []string{"tor-b"}}},
	}
	return w
}

// change makes one random change; it returns what it did and the key of the Service it
// changed ("" for a cluster-wide change, "-" for none).
func (w *planWorld) change(r *rand.Rand) (string, string) {
	key := fmt.Sprintf("default/svc%d", r.IntN(12))
	name := key[len("default/"):]
	pick := func(n int) []string {
		var out []string
		for range n {
			if s := planIPs[r.IntN(len(planIPs))]; !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out
	}
	nodes := func() map[string]bool {
		m := map[string]bool{}
		for range r.IntN(3) {
			m[fmt.Sprintf("node%d", 1+r.IntN(4))] = true
		}
		return m
	}
	switch n := r.IntN(100); {
	case n < 35: // a Service added or changed
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
		if r.IntN(2) == 0 {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		if r.IntN(10) == 0 {
			s.Spec.Type = corev1.ServiceTypeClusterIP
		}
		for _, ip := range pick(1 + r.IntN(2)) {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		w.svcs[key] = s
		return "service " + key, key
	case n < 45:
		delete(w.svcs, key)
		return "delete " + key, key
	case n < 75: // serving nodes: a new map, as the speaker's filter gives
		if m := nodes(); len(m) > 0 {
			w.serving = maps.Clone(w.serving)
			w.serving[key] = m
		} else {
			w.serving = maps.Clone(w.serving)
			delete(w.serving, key)
		}
		return "serving " + key, key
	case n < 80:
		return "nothing", "-"
	case n < 84: // liveness: memberlist's view and the Leases'
		live := func() map[string]bool {
			if r.IntN(3) == 0 {
				return nil
			}
			m := map[string]bool{}
			for _, nd := range w.nodes {
				if r.IntN(4) > 0 {
					m[nd.Name] = true
				}
			}
			return m
		}
		w.alive, w.renewing = live(), live()
		return "alive", ""
	case n < 87: // a node's labels
		i := r.IntN(len(w.nodes))
		nd := w.nodes[i].DeepCopy()
		if _, ok := nd.Labels[LabelExcludeFromLB]; ok {
			delete(nd.Labels, LabelExcludeFromLB)
		} else {
			nd.Labels[LabelExcludeFromLB] = "true"
		}
		w.nodes = slices.Clone(w.nodes)
		w.nodes[i] = nd
		return "node " + nd.Name, ""
	case n < 89: // a node's heartbeat: no change for the planner
		i := r.IntN(len(w.nodes))
		nd := w.nodes[i].DeepCopy()
		nd.Status.Conditions = append(nd.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady})
		w.nodes = slices.Clone(w.nodes)
		w.nodes[i] = nd
		return "heartbeat " + nd.Name, "-"
	case n < 92: // a pool's addresses
		p := w.pools[1].DeepCopy()
		p.Generation++
		if len(p.Spec.Addresses) == 2 {
			p.Spec.Addresses = []string{"203.0.113.0/27", "2001:db8:113::/64"}
		} else {
			p.Spec.Addresses = []string{"203.0.113.0/24", "2001:db8:113::/64"}
		}
		w.pools = []*v1alpha1.IPPool{w.pools[0], p}
		return "pool", ""
	case n < 95: // an advertisement's aggregation and nodes
		a := w.bgpAds[0].DeepCopy()
		a.Generation++
		if a.Spec.AggregationLength == nil {
			a.Spec.AggregationLength = ptr(int32(24))
			a.Spec.NodeSelectors = []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"r3"}}}}}
		} else {
			a.Spec.AggregationLength, a.Spec.NodeSelectors = nil, nil
		}
		w.bgpAds = []*v1alpha1.BGPAdvertisement{a, w.bgpAds[1]}
		switch {
		case r.IntN(4) == 0: // BGP alone: memberlist's view is read by nothing
			w.ads = nil
		case w.ads == nil:
			w.ads = []*v1alpha1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{"lan"}}}}
		default:
			l := w.ads[0].DeepCopy()
			l.Generation++
			if l.Spec.NodeSelectors == nil {
				l.Spec.NodeSelectors = []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"r1"}}}}}
			} else {
				l.Spec.NodeSelectors = nil
			}
			w.ads = []*v1alpha1.L2Advertisement{l}
		}
		return "advertisements", ""
	case n < 98: // a peer's nodes
		p := w.peers[1].DeepCopy()
		p.Generation++
		if p.Spec.NodeSelectors[0].MatchLabels["rack"] == "r2" {
			p.Spec.NodeSelectors[0].MatchLabels = map[string]string{"rack": "r4"}
		} else {
			p.Spec.NodeSelectors[0].MatchLabels = map[string]string{"rack": "r2"}
		}
		w.peers = []*v1alpha1.BGPPeer{w.peers[0], p}
		return "peer", ""
	default: // this node's interfaces: eth0 down, or up again
		if w.world.ifaces == nil {
			down := lanIfaces()
			down[0].Up = false
			w.world.ifaces = map[string][]l2.Interface{"node2": down}
		} else {
			w.world.ifaces = nil
		}
		return "interfaces", ""
	}
}

// snapshot is node's snapshot, its lists in a random order (as an informer's cache lists).
func (w *planWorld) snapshot(node string, r *rand.Rand) *Snapshot {
	ifaces, ok := w.world.ifaces[node]
	if !ok {
		ifaces = lanIfaces()
	}
	svcs := slices.Collect(maps.Values(w.svcs))
	r.Shuffle(len(svcs), func(i, j int) { svcs[i], svcs[j] = svcs[j], svcs[i] })
	nodes := slices.Clone(w.nodes)
	r.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	return &Snapshot{
		Node: node, Alive: w.alive, Renewing: w.renewing, Nodes: nodes, Services: svcs, Serving: w.serving, Pools: w.pools, L2Ads: w.ads,
		BGPAds: w.bgpAds, Peers: w.peers, Interfaces: ifaces, Reach: map[string]Reach{},
		Handles: func(s *corev1.Service) bool {
			return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil
		},
	}
}
