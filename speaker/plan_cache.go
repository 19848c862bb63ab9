package speaker

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Planning plans incrementally: it keeps each mode's planner, with what it planned, and the
// inputs it planned from, so that a snapshot in which one Service (or its serving nodes)
// changed re-plans that Service alone. It compares every Service of the snapshot with what it
// was planned from (pointers, mostly), or, when the snapshot lists the Services that may have
// changed (Snapshot.Changed), those alone: a change then costs that Service's plan, whatever
// the number of Services. A change of a cluster-wide input (this node's
// interfaces, the nodes, liveness and reach, pools, advertisements, peers) re-plans everything.
// It does no I/O: the speaker owns one and hands it each sync's snapshot. Its plan for a
// snapshot is the one Compute gives (TestPlanningIsCompute); a target nothing changed in is the
// same pointer as before, and so are the Announced of the Services that did not change.
type Planning struct {
	planners []Planner
	cluster  *clusterInputs             // nil before the first plan
	services map[string]*plannedService // per key, the Services of ours planned
	byObject map[*corev1.Service]*plannedService
	epoch    uint64
	plan     Plan
}

// plannedService is what a Service was planned from.
type plannedService struct {
	key     string
	svc     *corev1.Service
	serving map[string]bool
	has     bool // it had serving nodes (an entry in Input.Serving)
	epoch   uint64
}

// NewPlanning returns a Planning that has planned nothing yet.
func NewPlanning() *Planning {
	return &Planning{planners: Planners()}
}

// Plan returns this node's plan for s.
func (c *Planning) Plan(s *Snapshot) Plan {
	in := newInput(s)
	ch := &Changes{Services: map[string]*corev1.Service{}}
	cl := newClusterInputs(s)
	if c.cluster == nil || !c.cluster.same(cl) {
		ch.All = true
		c.services, c.byObject = map[string]*plannedService{}, map[*corev1.Service]*plannedService{}
	}
	c.cluster = cl
	if ch.All || s.Changed == nil {
		c.compareAll(in, ch)
	} else {
		c.compare(in, ch)
	}
	if !ch.All && len(ch.Services) == 0 {
		return c.plan
	}
	var p Plan
	for _, pl := range c.planners {
		p.Targets = append(p.Targets, pl.Plan(in, ch, &p))
	}
	slices.SortFunc(p.Warnings, func(a, b Warning) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Namespace, b.Namespace),
			strings.Compare(a.Name, b.Name), strings.Compare(a.Message, b.Message))
	})
	p.Warnings = slices.Compact(p.Warnings)
	c.plan = p
	return p
}

// compare finds, of the Services the snapshot says may have changed, those that did, and
// records them in ch.
func (c *Planning) compare(in *Input, ch *Changes) {
	for key := range in.Changed {
		svc := in.Service(key)
		e := c.services[key]
		if !in.ours(svc) {
			if e != nil {
				ch.Services[key] = nil
				delete(c.services, key)
				delete(c.byObject, e.svc)
			}
			continue
		}
		if e == nil {
			e = &plannedService{key: key}
			c.services[key] = e
		}
		if e.svc != svc {
			delete(c.byObject, e.svc)
			e.svc = svc
			c.byObject[svc] = e
			ch.Services[key] = svc
		}
		if serving, has := in.serving(key); has != e.has || !sameNodes(serving, e.serving) {
			e.serving, e.has = serving, has
			ch.Services[key] = svc
		}
	}
}

// compareAll compares every Service of ours with what it was planned from, and records those
// that changed in ch.
func (c *Planning) compareAll(in *Input, ch *Changes) {
	c.epoch++
	seen := 0
	for svc := range in.handled {
		e := c.byObject[svc]
		if e == nil { // new, or a new version
			key := config.ServiceKey(svc.Namespace, svc.Name)
			if e = c.services[key]; e == nil {
				e = &plannedService{key: key}
				c.services[key] = e
			} else {
				delete(c.byObject, e.svc)
			}
			e.svc = svc
			c.byObject[svc] = e
			ch.Services[key] = svc
		}
		if e.epoch == c.epoch {
			continue // listed twice
		}
		serving, has := in.serving(e.key)
		if has != e.has || !sameNodes(serving, e.serving) {
			e.serving, e.has = serving, has
			ch.Services[e.key] = svc
		}
		e.epoch = c.epoch
		seen++
	}
	if seen != len(c.services) {
		for key, e := range c.services {
			if e.epoch != c.epoch {
				ch.Services[key] = nil
				delete(c.services, key)
				delete(c.byObject, e.svc)
			}
		}
	}
}

// sameNodes reports whether two sets of serving nodes are equal: the same map (the speaker's
// filter replaces a Service's map when its nodes change, never changes it), or equal ones.
func sameNodes(a, b map[string]bool) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() || maps.Equal(a, b)
}

// clusterInputs are the inputs every Service's plan may depend on.
type clusterInputs struct {
	node     string
	ifaces   []l2.Interface
	alive    map[string]bool
	renewing map[string]bool
	reach    map[string]Reach
	nodes    []*corev1.Node
	pools    []*v1alpha1.IPPool
	l2Ads    []*v1alpha1.L2Advertisement
	bgpAds   []*v1alpha1.BGPAdvertisement
	peers    []*v1alpha1.BGPPeer
}

func newClusterInputs(s *Snapshot) *clusterInputs {
	c := &clusterInputs{node: s.Node, ifaces: s.Interfaces, alive: s.Alive, reach: s.Reach, nodes: s.Nodes,
		pools: s.Pools, l2Ads: s.L2Ads, bgpAds: s.BGPAds, peers: s.Peers}
	// The BGP planner reads the Leases' view, and memberlist's only without it; the L2 planner
	// alone reads what memberlist says of the nodes' reach. Then memberlist flapping on a
	// loaded node does not re-plan every BGP Service.
	if len(s.BGPAds) > 0 {
		c.renewing = s.Renewing
	}
	if len(s.L2Ads) == 0 {
		c.reach = nil
		if s.Renewing != nil || len(s.BGPAds) == 0 {
			c.alive = nil
		}
	}
	return c
}

// same reports whether two snapshots' cluster-wide inputs say the same to the planner: the
// objects compare as the speaker's event filters compare their versions (a node's heartbeat, a
// pool's counters are not a change).
func (a *clusterInputs) same(b *clusterInputs) bool {
	return a.node == b.node && (a.alive == nil) == (b.alive == nil) && maps.Equal(a.alive, b.alive) &&
		(a.renewing == nil) == (b.renewing == nil) && maps.Equal(a.renewing, b.renewing) &&
		maps.EqualFunc(a.reach, b.reach, func(x, y Reach) bool { return maps.Equal(x, y) }) &&
		reflect.DeepEqual(a.ifaces, b.ifaces) &&
		sameObjects(a.nodes, b.nodes, nodeChanged) && sameObjects(a.pools, b.pools, specChanged) &&
		sameObjects(a.l2Ads, b.l2Ads, specChanged) && sameObjects(a.bgpAds, b.bgpAds, specChanged) &&
		sameObjects(a.peers, b.peers, specChanged)
}

// sameObjects reports whether two lists hold the same objects by name, in any order, each the
// same version or one that changed says nothing of.
func sameObjects[T metav1.Object](a, b []T, changed changed) bool {
	if len(a) != len(b) {
		return false
	}
	byName := make(map[string]T, len(a))
	for _, o := range a {
		byName[o.GetName()] = o
	}
	for _, o := range b {
		old, ok := byName[o.GetName()]
		if !ok || any(old) != any(o) && changed(old, o) {
			return false
		}
	}
	return true
}
