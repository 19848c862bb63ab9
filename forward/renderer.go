package forward

import (
	"cmp"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/forward/health"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Renderer renders the table one Service at a time and keeps what it rendered: each Service's
// part, and the inputs it was rendered from (the Service and EndpointSlice objects, compared by
// identity: an informer replaces an object when it changes, and a caller that changes one in
// place must pass a copy). A Ruleset re-renders only the Services whose inputs changed since
// the previous one, and those that won or lost a frontend (an address, protocol and port that
// two Services claim) because of them; a change of the node or the options re-renders all.
// The Rulesets it returns share the unchanged parts, so an [Applier] sends only the delta. A
// Renderer is not safe for concurrent use.
type Renderer struct {
	node      Node
	opts      Options
	nodeAddrs []netip.Addr
	fam       [2]familySets
	verdicts  map[string]string // chain -> "goto chain", made once
	base      *part             // nil: to render
	svcs      map[string]*svcState
	dirty     map[string]bool
	claims    map[string][]portRef // frontend key -> the Service ports claiming it, in order
	parts     partWriter
	pickDefs  map[string]*chain
	pickRefs  map[string]int
	shared    map[elemKey]int // shared elements of all parts, counted
	counts    Stats           // of all parts, shared elements not included
	udp       map[string]bool // Services with UDP ports
	health    map[string]bool // Services with a health check
	last      *Ruleset
	rendered  int // Services rendered by the last Ruleset call
}

// svcState is one Service as last rendered.
type svcState struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice // by name
	ports  []*servicePort
	specs  [][]frontendSpec // per port
	claims []claim          // the frontend keys its ports claim
	part   *part
}

// claim is a frontend key claimed by a Service port.
type claim struct {
	key string
	ref portRef
}

// portRef identifies a Service port; frontends go to the first that claims them.
type portRef struct {
	namespace, name, protocol string
	port                      uint16
}

func comparePortRef(a, b portRef) int {
	return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name),
		cmp.Compare(a.protocol, b.protocol), cmp.Compare(a.port, b.port))
}

func (sp *servicePort) ref() portRef {
	return portRef{namespace: sp.namespace, name: sp.name, protocol: sp.protocol, port: sp.port}
}

// NewRenderer returns a Renderer with nothing rendered yet.
func NewRenderer() *Renderer {
	return &Renderer{
		verdicts: map[string]string{}, svcs: map[string]*svcState{}, dirty: map[string]bool{},
		claims: map[string][]portRef{}, pickDefs: map[string]*chain{},
		pickRefs: map[string]int{}, shared: map[elemKey]int{}, udp: map[string]bool{}, health: map[string]bool{},
	}
}

// Render renders in: the Services and EndpointSlices of in replace those the Renderer knew
// (Services missing from in are deleted), and the Ruleset re-renders what changed.
func (r *Renderer) Render(in Input) *Ruleset {
	r.SetNode(in.Node, in.Options)
	bySvc := slicesByService(in.EndpointSlices)
	seen := make(map[string]bool, len(in.Services))
	for _, svc := range in.Services {
		if svc == nil {
			continue
		}
		k := svc.Namespace + "/" + svc.Name
		seen[k] = true
		r.setService(k, svc, bySvc[k])
	}
	for k := range r.svcs {
		if !seen[k] {
			r.setService(k, nil, nil)
		}
	}
	return r.Ruleset()
}

// SetNode sets the node and options; when they differ from the previous ones, the next
// Ruleset renders every Service again.
func (r *Renderer) SetNode(n Node, opts Options) {
	addrs := nodePortAddresses(n.Addresses)
	cidrs := slices.Clone(n.PodCIDRs)
	slices.SortFunc(cidrs, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	if r.base != nil && n.Name == r.node.Name && n.Zone == r.node.Zone && opts == r.opts &&
		slices.Equal(addrs, r.nodeAddrs) && slices.Equal(cidrs, r.node.PodCIDRs) {
		return
	}
	r.node, r.opts, r.nodeAddrs = Node{Name: n.Name, Zone: n.Zone, Addresses: addrs, PodCIDRs: cidrs}, opts, addrs
	r.base = nil
	for k := range r.svcs {
		r.dirty[k] = true
	}
}

// SetService records the Service key ("namespace/name") with its EndpointSlices; a nil svc
// deletes it. Nothing is rendered until Ruleset, and nothing at all when the objects are the
// ones last rendered.
func (r *Renderer) SetService(key string, svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice) {
	var valid []*discoveryv1.EndpointSlice
	for _, s := range epSlices {
		if s != nil && (s.AddressType == discoveryv1.AddressTypeIPv4 || s.AddressType == discoveryv1.AddressTypeIPv6) {
			valid = append(valid, s)
		}
	}
	slices.SortFunc(valid, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	r.setService(key, svc, valid)
}

// Rendered returns the Service object last recorded for key, or nil.
func (r *Renderer) Rendered(key string) *corev1.Service {
	if st := r.svcs[key]; st != nil {
		return st.svc
	}
	return nil
}

func (r *Renderer) setService(key string, svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice) {
	st := r.svcs[key]
	if st == nil {
		if svc == nil {
			return
		}
		st = &svcState{}
		r.svcs[key] = st
	} else if SameService(st.svc, svc) && slices.EqualFunc(st.slices, epSlices, SameEndpointSlice) {
		st.svc, st.slices = svc, epSlices // newer objects, same content
		return
	}
	st.svc, st.slices = svc, epSlices
	r.dirty[key] = true
}

// Services returns the keys of the Services recorded.
func (r *Renderer) Services() []string { return slices.Collect(maps.Keys(r.svcs)) }

// Pending returns the number of Services to render at the next Ruleset.
func (r *Renderer) Pending() int { return len(r.dirty) }

// LastRendered returns the number of Services rendered by the last Ruleset call that had
// anything to render.
func (r *Renderer) LastRendered() int { return r.rendered }

// Ruleset renders the Services that changed and returns the table.
func (r *Renderer) Ruleset() *Ruleset {
	if r.last != nil && r.base != nil && len(r.dirty) == 0 {
		return r.last
	}
	r.rendered = 0
	if r.base == nil {
		r.base = r.skeleton()
	}
	// Claims first: a Service that wins or loses a frontend renders again too.
	for _, key := range slices.Collect(maps.Keys(r.dirty)) {
		st := r.svcs[key]
		r.unclaim(st)
		st.ports, st.specs, st.claims = nil, nil, nil
		if st.svc != nil && st.svc.Spec.Type != corev1.ServiceTypeExternalName {
			st.ports = servicePortsOf(r.node.Name, st.svc, st.slices)
		}
		r.claim(st)
	}
	for key := range r.dirty {
		st := r.svcs[key]
		var p *part
		if len(st.ports) > 0 {
			p = r.renderService(st)
		}
		r.replace(key, st.part, p)
		st.part = p
		delete(r.udp, key)
		delete(r.health, key)
		if slices.ContainsFunc(st.ports, func(sp *servicePort) bool { return sp.protocol == "udp" }) {
			r.udp[key] = true
		}
		if needsHealthCheck(st.svc) {
			r.health[key] = true
		}
		if st.svc == nil {
			delete(r.svcs, key)
		}
		r.rendered++
	}
	clear(r.dirty)
	picks := make(map[string]*chain, len(r.pickRefs))
	for name := range r.pickRefs {
		picks[name] = r.pickDefs[name]
	}
	stats := r.counts
	stats.Chains += len(r.base.chains) + len(picks)
	stats.Sets += len(r.base.sets)
	stats.Elements += len(r.base.elems) + len(r.shared)
	stats.Rules += r.base.rules
	for _, c := range picks {
		stats.Rules += len(c.rules)
	}
	r.last = &Ruleset{base: r.base, parts: r.parts.freeze(), picks: picks, stats: stats}
	return r.last
}

// unclaim removes the claims of st's ports, marking the Services that win a frontend instead.
func (r *Renderer) unclaim(st *svcState) {
	for _, c := range st.claims {
		refs := r.claims[c.key]
		j := slices.Index(refs, c.ref)
		if j < 0 {
			continue
		}
		refs = slices.Delete(refs, j, j+1)
		if len(refs) == 0 {
			delete(r.claims, c.key)
			continue
		}
		r.claims[c.key] = refs
		if j == 0 {
			r.dirty[refs[0].namespace+"/"+refs[0].name] = true
		}
	}
}

// claim records the frontends st's ports claim, marking the Services that lose one.
func (r *Renderer) claim(st *svcState) {
	for _, sp := range st.ports {
		ref := sp.ref()
		specs := r.frontends(sp)
		st.specs = append(st.specs, specs)
		for _, fs := range specs {
			c := claim{fs.key, ref}
			if slices.Contains(st.claims, c) {
				continue
			}
			st.claims = append(st.claims, c)
			refs := r.claims[fs.key]
			j, _ := slices.BinarySearchFunc(refs, ref, comparePortRef)
			if j == 0 && len(refs) > 0 {
				r.dirty[refs[0].namespace+"/"+refs[0].name] = true
			}
			r.claims[fs.key] = slices.Insert(refs, j, ref)
		}
	}
}

// renderService renders one Service's ports into a part.
func (r *Renderer) renderService(st *svcState) *part {
	b := &builder{Renderer: r, p: newPart(st.svc.Namespace, st.svc.Name), st: st}
	n := 0
	for i, sp := range st.ports {
		n += len(st.specs[i]) * (len(sp.endpoints) + 4)
	}
	b.p.elems = make([]element, 0, n)
	for i, sp := range st.ports {
		b.servicePort(sp, st.specs[i])
	}
	return b.p.finish()
}

// replace swaps a Service's part, keeping the counts of pick chains, shared elements and
// stats.
func (r *Renderer) replace(key string, old, new *part) {
	if old != nil {
		for _, n := range old.picks {
			if r.pickRefs[n]--; r.pickRefs[n] == 0 {
				delete(r.pickRefs, n)
			}
		}
		for i := range old.elems {
			if e := &old.elems[i]; e.st.shared {
				k := elemKey{e.st.name(), e.k}
				if r.shared[k]--; r.shared[k] <= 0 {
					delete(r.shared, k)
				}
			}
		}
		r.counts.Chains -= len(old.chains)
		r.counts.Rules -= old.rules
		r.counts.Sets -= len(old.sets)
		r.counts.Elements -= old.own
		r.parts.set(key, nil)
	}
	if new != nil {
		for _, n := range new.picks {
			r.pickRefs[n]++
		}
		for i := range new.elems {
			if e := &new.elems[i]; e.st.shared {
				r.shared[elemKey{e.st.name(), e.k}]++
			}
		}
		r.counts.Chains += len(new.chains)
		r.counts.Rules += new.rules
		r.counts.Sets += len(new.sets)
		r.counts.Elements += new.own
		r.parts.set(key, new)
	}
}

// UDPTargets returns the UDP frontends of the Services of the last Ruleset, for conntrack
// cleanup (see NewUDPTargets); its cost follows the number of UDP Services.
func (r *Renderer) UDPTargets() UDPTargets {
	var ports []*servicePort
	for key := range r.udp {
		for _, sp := range r.svcs[key].ports {
			if sp.protocol == "udp" {
				ports = append(ports, sp)
			}
		}
	}
	slices.SortFunc(ports, func(a, b *servicePort) int { return comparePortRef(a.ref(), b.ref()) })
	return udpTargets(ports, r.opts)
}

// HealthChecks returns the health checks of the Services of the last Ruleset (see
// HealthChecks); its cost follows the number of Services with one.
func (r *Renderer) HealthChecks() []health.Service {
	var out []health.Service
	for key := range r.health {
		st := r.svcs[key]
		if hc, ok := healthCheck(r.node.Name, st.svc, st.slices); ok {
			out = append(out, hc)
		}
	}
	sortHealthChecks(out)
	return out
}

// SameService reports whether two versions of a Service (either may be nil) forward alike:
// their spec and load balancer status are equal. An update that changes neither (metadata,
// conditions) needs no render.
func SameService(a, b *corev1.Service) bool {
	if a == b {
		return true
	}
	return a != nil && b != nil && a.Namespace == b.Namespace && a.Name == b.Name &&
		reflect.DeepEqual(a.Spec, b.Spec) && reflect.DeepEqual(a.Status.LoadBalancer, b.Status.LoadBalancer)
}

// SameEndpointSlice reports whether two versions of an EndpointSlice (either may be nil) give
// the same endpoints to the same Service: an update that changes neither (metadata, the trigger
// time of a change undone) needs no render.
func SameEndpointSlice(a, b *discoveryv1.EndpointSlice) bool {
	if a == b {
		return true
	}
	return a != nil && b != nil && a.Namespace == b.Namespace && a.Name == b.Name && a.AddressType == b.AddressType &&
		a.Labels[discoveryv1.LabelServiceName] == b.Labels[discoveryv1.LabelServiceName] &&
		reflect.DeepEqual(a.Ports, b.Ports) && reflect.DeepEqual(a.Endpoints, b.Endpoints)
}
