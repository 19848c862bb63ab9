// Package speaker runs on every node: it watches Services, EndpointSlices, Nodes and ironlb's
// configuration, asks the planner (Planning: incremental, no I/O) what this node must announce
// in each mode, and drives the layer-2 announcer, the BGP speaker and the nftables rules with
// it, writing ServiceAnnouncements (L2: one per Service it answers for; BGP: one per Service,
// listing its nodes, by one of them) and one BGPSessionState per session. README.md explains
// the shape.
package speaker

import (
	"net/netip"
	"slices"

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
	Node       string          // this node's name
	Interfaces []l2.Interface  // this node's interfaces
	Alive      map[string]bool // nodes alive in memberlist; nil means "all" (no liveness)
	// Renewing is the nodes whose speaker Lease is fresh, this one included: the BGP report
	// elects among them (report_bgp.go). nil: no Leases, and Alive's view is used.
	Renewing map[string]bool
	Reach    map[string]Reach // what each node published of its L2 reach; missing: full
	Handles  func(*corev1.Service) bool
	Nodes    []*corev1.Node
	Services []*corev1.Service
	Slices   []*discoveryv1.EndpointSlice
	// Serving is, per Service key, the nodes its traffic may go to (config.ServingNodes of
	// Slices), when the caller keeps it up to date; nil: ServingOf's, or computed from Slices.
	Serving map[string]map[string]bool
	// ServingOf, when set and Serving is nil, looks up one Service's serving nodes (the
	// speaker's EndpointSlice filter keeps them); ok false: none.
	ServingOf func(key string) (nodes map[string]bool, ok bool)
	// Changed, when not nil, are the keys of the only Services whose object or serving nodes
	// may have changed since the previous snapshot given to the same Planning (the speaker's
	// event filters collect them): it looks those up with Service (nil: gone) and leaves
	// Services to ListServices, called only when everything is re-planned.
	Changed      map[string]bool
	Service      func(key string) *corev1.Service
	ListServices func() []*corev1.Service
	Pools        []*v1alpha1.IPPool
	L2Ads        []*v1alpha1.L2Advertisement
	BGPAds       []*v1alpha1.BGPAdvertisement
	Peers        []*v1alpha1.BGPPeer
}

// Input is what every mode's planner reads: the snapshot and the model compiled from it once.
type Input struct {
	*Snapshot
	Pools config.Pools // in precedence order
	Self  *corev1.Node // this node; nil when the cache does not have it yet

	services []*corev1.Service // every Service, once listed
}

func newInput(s *Snapshot) *Input {
	in := &Input{Snapshot: s, Pools: config.CompilePools(s.Pools), Self: nodeByName(s.Nodes, s.Node), services: s.Services}
	if s.Serving == nil && s.ServingOf == nil {
		c := *s
		c.Serving = config.ServingNodes(s.Slices)
		in.Snapshot = &c
	}
	return in
}

// serving returns the nodes a Service's traffic may go to (config.ServingNodes); ok false: none.
func (in *Input) serving(key string) (map[string]bool, bool) {
	if in.Serving == nil {
		return in.ServingOf(key)
	}
	nodes, ok := in.Serving[key]
	return nodes, ok
}

// ours reports whether svc is a Service of ours.
func (in *Input) ours(svc *corev1.Service) bool {
	return svc != nil && (in.Handles == nil || in.Handles(svc))
}

// handled returns the Services of ours: every one, listed (ListServices) if need be.
func (in *Input) handled(yield func(*corev1.Service) bool) {
	if in.services == nil && in.ListServices != nil {
		in.services = in.ListServices()
	}
	for _, svc := range in.services {
		if in.ours(svc) && !yield(svc) {
			return
		}
	}
}

// A Planner is one announcement mode's planner: from the input, this node's target for the
// mode. L2 and BGP are siblings; a new mode is one planner with its Target, listed in Planners,
// and a driver in the speaker that applies its target. A planner keeps what it planned before
// (Planning owns it): it re-plans the Services ch names, everything when ch.All, and returns
// the same Target as before when nothing it plans changed. It adds its warnings to p on every
// call.
type Planner interface {
	Plan(in *Input, ch *Changes, p *Plan) Target
}

// Changes says what changed since a planner's previous call.
type Changes struct {
	// All: a cluster-wide input changed (or this is the first call): re-plan everything.
	All bool
	// Services are the Services of ours whose inputs (the object, its serving nodes) changed,
	// by key; nil for one that is gone (deleted, or no longer ours).
	Services map[string]*corev1.Service
}

// Planners are the modes, new, in the order their targets appear in a plan and are applied.
func Planners() []Planner { return []Planner{&l2Planner{}, &bgpPlanner{}} }

// Target is what one mode announces on this node.
type Target interface {
	// Mode names the mode (the ServiceAnnouncement's mode).
	Mode() v1alpha1.AnnouncementMode
	// Announced is what this node announces per Service key, for its events and logs.
	Announced() map[string]*Announced
	// Reported is what this node writes as ServiceAnnouncements, per Service key: its own
	// announcements (L2), or every node's, for the Services it reports (BGP).
	Reported() map[string]*Announced
	// Where says where a Service's addresses go, for its events ("on [eth0]", "to peers [a]").
	Where(a *Announced) string
}

// diffed is a Target that knows which Services' Announced and Reported it changed from the
// target it was made from (base), so that what follows compares those alone.
type diffed interface {
	diff() (base Target, keys []string)
}

// Plan is what this node announces: one target per mode, in Planners order.
type Plan struct {
	Targets []Target
	// Warnings report misconfiguration; the rest of the plan is unaffected.
	Warnings []Warning
}

// TargetOf returns the plan's target of type T (nil when the plan has none).
func TargetOf[T Target](p Plan) T {
	for _, t := range p.Targets {
		if t, ok := t.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}

// Announced is what is announced of one Service in one mode: by this node, or (a BGP report)
// by the nodes listed.
type Announced struct {
	Namespace, Name string
	IPs             []netip.Addr
	Interfaces      []string // L2
	Peers           []string // BGP
	Nodes           []string // a BGP report: every node that announces it
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

// Compute computes this node's plan from a snapshot, from scratch: the model once, then each
// mode's planner. It is pure and deterministic; Planning.Plan gives the same result for the
// same snapshot, re-planning only what changed since its previous snapshot.
func Compute(s *Snapshot) Plan {
	return NewPlanning().Plan(s)
}

func nodeByName(nodes []*corev1.Node, name string) *corev1.Node {
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
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
