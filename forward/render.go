package forward

import (
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// Node is the node the rules are rendered for.
type Node struct {
	// Name is the node's name, as EndpointSlices give it in endpoints[].nodeName: endpoints
	// with this name are local.
	Name string
	// Addresses are the node's addresses that accept NodePort traffic. Loopback, link-local,
	// unspecified and zoned addresses are ignored (DNAT from loopback needs route_localnet,
	// which ironlb does not turn on).
	Addresses []netip.Addr
	// PodCIDRs are the node's pod ranges (spec.podCIDRs): traffic from them, like traffic from
	// the node itself, to a Local-policy LoadBalancer IP, externalIP or NodePort goes to any
	// endpoint when the node has none (kube-proxy's short-circuit, detect-local-mode NodeCIDR).
	PodCIDRs []netip.Prefix
	// Zone is the node's topology.kubernetes.io/zone label: with topology hints (spec.
	// trafficDistribution PreferClose / PreferSameZone, or the topology-mode annotation)
	// traffic goes to the endpoints hinted for this zone, as with kube-proxy.
	Zone string
}

// Options tune what the renderer forwards. The zero value forwards LoadBalancer IPs and
// NodePorts but not ClusterIPs; [DefaultOptions] also forwards ClusterIPs.
type Options struct {
	// ClusterIPs forwards ClusterIP:port too, for traffic from the node itself (output hook)
	// and from the pods it routes (prerouting). Turn it off when something else (a CNI's
	// service implementation) handles ClusterIPs. Cost: one frontend per ClusterIP and port,
	// about a third of the table for LoadBalancer Services.
	ClusterIPs bool
	// MasqueradeAll masquerades every forwarded connection that goes to an endpoint on
	// another node, ClusterIP traffic included. Needed only when ClusterIPs are reached from
	// outside the cluster (a route to the service CIDR via a node): the reply must come back
	// through this node. Zero: ClusterIP traffic keeps its source (it comes from this node or
	// its pods, so replies return here anyway); LoadBalancer and NodePort traffic with
	// externalTrafficPolicy Cluster is masqueraded either way when its endpoint is remote.
	MasqueradeAll bool
}

// DefaultOptions returns the options the speaker uses unless told otherwise: ClusterIPs
// forwarded, masquerading only where needed.
func DefaultOptions() Options { return Options{ClusterIPs: true} }

// Input is everything the rules depend on.
type Input struct {
	Node           Node
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Options        Options
}

// Render computes the desired content of ironlb's table. It is pure and deterministic: the
// same input gives the same Ruleset, whatever the order of the slices. Services of type
// ExternalName, unparsable addresses and ports are skipped. When two Services claim the same
// address, protocol and port, the first in namespace/name order wins. A [Renderer] does the
// same, re-rendering only what changed since its previous Ruleset.
func Render(in Input) *Ruleset { return NewRenderer().Render(in) }

func nodePortAddresses(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.Zone() != "" {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// builder renders one Service into a part.
type builder struct {
	*Renderer
	p  *part
	st *svcState
}

func (b *builder) gotoVerdict(chain string) string {
	v, ok := b.verdicts[chain]
	if !ok {
		v = gotoVerdict(chain)
		b.verdicts[chain] = v
	}
	return v
}

// familySets are the per-family sets and maps the Services fill.
type familySets struct {
	frontends, noEndpoints, masquerade, local, hairpin, affinityFrontends, serviceIPs *set
	firewall, firewallAllow, shortCircuit, podCIDRs                                   *set
	endpoints                                                                         map[string]*set // by protocol
}

func itoa(i int) string { return strconv.Itoa(i) }

func baseChain(name string, t knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority) knftables.Chain {
	return knftables.Chain{Name: name, Type: &t, Hook: &hook, Priority: &prio}
}

// l4 is the transport match that nft requires before a port mapping or a ct proto-dst.
// It is an anonymous set, but one per shared rule, never one per Service.
const l4 = "meta l4proto { tcp, udp, sctp }"

// skeleton returns the base part: the chains, rules, sets and maps that do not depend on the
// Services, and the node's pod CIDRs. It sets r.fam.
func (r *Renderer) skeleton() *part {
	b := newPart("", "")
	r.skeletonInto(b)
	r.podCIDRs(b, r.node.PodCIDRs)
	return b.finish()
}

func (r *Renderer) skeletonInto(p *part) {
	b := r
	// nft 1.0.6 accepts the name "dstnat" only in prerouting; -100 is its value.
	p.addChain(baseChain(natPreroutingChain, knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority), "jump "+servicesChain)
	p.addChain(baseChain(natOutputChain, knftables.NATType, knftables.OutputHook, "-100"), "jump "+servicesChain)
	p.addChain(baseChain(natPostroutingChain, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority),
		"jump "+affinityRecordChain, "jump "+masqueradingChain)
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
	}{{filterInputChain, knftables.InputHook}, {filterForwardChain, knftables.ForwardHook}, {filterOutputChain, knftables.OutputHook}} {
		p.addChain(baseChain(c.name, knftables.FilterType, c.hook, knftables.FilterPriority), "ct state new jump "+endpointsCheckChain)
	}
	// loadBalancerSourceRanges are checked before DNAT, where the destination is still the
	// LoadBalancer IP, for traffic from outside and from the node itself (as kube-proxy does).
	p.addChain(baseChain(filterPreroutingPreDNATChain, knftables.FilterType, knftables.PreroutingHook, "-110"), "ct state new jump "+firewallCheckChain)
	p.addChain(baseChain(filterOutputPreDNATChain, knftables.FilterType, knftables.OutputHook, "-110"), "ct state new jump "+firewallCheckChain)
	p.addChain(knftables.Chain{Name: firewallCheckChain})
	p.addChain(knftables.Chain{Name: servicesChain})
	p.addChain(knftables.Chain{Name: endpointsCheckChain})
	// TCP gets a reset, anything else ICMP port unreachable: both fail the client's connect at
	// once, and resets are not subject to the kernel's ICMP rate limits.
	p.addChain(knftables.Chain{Name: rejectChain}, "meta l4proto tcp reject with tcp reset", "reject")
	p.addChain(knftables.Chain{Name: masqueradingChain})
	p.addChain(knftables.Chain{Name: affinityRecordChain})
	for _, f := range families {
		b.familySkeleton(p, f)
	}
}

func (b *Renderer) familySkeleton(r *part, f ipFamily) {
	x, a, fs := f.nft(), f.addrType(), &b.fam[f]
	tuple := a + " . inet_proto . inet_service"
	fs.frontends = r.addMap(knftables.Map{Name: frontendsMap(f), Type: tuple + " : verdict",
		Comment: knftables.PtrTo("frontend (address . protocol . port) with endpoints -> pick chain")})
	fs.endpoints = map[string]*set{}
	for _, p := range protocols {
		fs.endpoints[p] = r.addMap(knftables.Map{Name: endpointsMap(f, p),
			TypeOf:  x + " daddr . " + p + " dport . numgen random mod 65536 : " + x + " daddr . " + p + " dport",
			Comment: knftables.PtrTo(p + " frontend . slot -> endpoint address . port")})
	}
	fs.noEndpoints = r.addMap(knftables.Map{Name: noEndpointsMap(f), Type: tuple + " : verdict",
		Comment: knftables.PtrTo("frontends without usable endpoints -> reject or drop")})
	fs.masquerade = r.addSet(knftables.Set{Name: masqueradeSet(f), Type: tuple,
		Comment: knftables.PtrTo("frontends whose connections to other nodes are masqueraded")})
	fs.local = r.addSet(knftables.Set{Name: localEndpointsSet(f), Type: a,
		Comment: knftables.PtrTo("endpoints on this node")})
	fs.hairpin = r.addSet(knftables.Set{Name: hairpinSet(f), Type: a + " . " + a,
		Comment: knftables.PtrTo("local endpoint . itself: a pod reaching itself through a Service")})
	fs.affinityFrontends = r.addMap(knftables.Map{Name: affinityFrontendsMap(f), Type: tuple + " : verdict",
		Comment: knftables.PtrTo("frontends with ClientIP affinity -> the chain recording clients")})
	fs.serviceIPs = r.addSet(knftables.Set{Name: serviceIPsSet(f), Type: a,
		Comment: knftables.PtrTo("ClusterIPs and LoadBalancer IPs: other ports are rejected")})

	fs.firewall = r.addSet(knftables.Set{Name: firewallSet(f), Type: tuple,
		Comment: knftables.PtrTo("LoadBalancer frontends with loadBalancerSourceRanges")})
	fs.firewallAllow = r.addSet(knftables.Set{Name: firewallAllowSet(f), Type: tuple + " . " + a, Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("frontend . source range allowed to reach it")})

	fs.shortCircuit = r.addMap(knftables.Map{Name: shortCircuitMap(f), Type: tuple + " : verdict",
		Comment: knftables.PtrTo("Local-policy external frontends -> pick among all endpoints, for traffic from this node and its pods")})
	fs.podCIDRs = r.addSet(knftables.Set{Name: podCIDRsSet(f), Type: a, Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("this node's pod ranges")})
	fs.local.shared, fs.hairpin.shared, fs.serviceIPs.shared = true, true, true
	fs.firewall.dedup, fs.firewallAllow.dedup = true, true

	// One rule per family for every Service's source ranges: a frontend listed in firewall
	// accepts new connections only from the ranges listed with it in firewall-allow.
	frontend := x + " daddr . meta l4proto . th dport"
	r.addChain(knftables.Chain{Name: firewallCheckChain},
		frontend+" @"+firewallSet(f)+" "+frontend+" . "+x+" saddr != @"+firewallAllowSet(f)+" drop")
	// From this node or its pods, a Local-policy external frontend goes to any endpoint.
	r.addChain(knftables.Chain{Name: servicesChain},
		"fib saddr type local "+frontend+" vmap @"+shortCircuitMap(f),
		x+" saddr @"+podCIDRsSet(f)+" "+frontend+" vmap @"+shortCircuitMap(f),
		frontend+" vmap @"+frontendsMap(f))
	// A port no Service uses on a Service's address is refused too. Routed on instead, a packet
	// to a LoadBalancer IP would go to the default gateway, which sends it back to this node
	// (ARP or BGP say the address is here) until its TTL runs out.
	r.addChain(knftables.Chain{Name: endpointsCheckChain}, x+" daddr . meta l4proto . th dport vmap @"+noEndpointsMap(f),
		l4+" "+x+" daddr @"+serviceIPsSet(f)+" goto "+rejectChain)
	// Postrouting sees the packet after DNAT; "ct original" gives the frontend it was sent to.
	// (A verdict map cannot serve as the set here: the kernel checks its jump targets, which
	// DNAT, against every hook that looks it up.)
	orig := "ct original " + x + " daddr . meta l4proto . ct original proto-dst"
	r.addChain(knftables.Chain{Name: masqueradingChain},
		"ct status dnat "+x+" saddr . "+x+" daddr @"+hairpinSet(f)+" masquerade fully-random",
		l4+" ct status dnat "+x+" daddr != @"+localEndpointsSet(f)+" "+orig+" @"+masqueradeSet(f)+" masquerade fully-random")
	r.addChain(knftables.Chain{Name: affinityRecordChain}, l4+" ct status dnat "+orig+" vmap @"+affinityFrontendsMap(f))
}

// podCIDRs fills the pod-cidrs sets.
func (b *Renderer) podCIDRs(g *part, cidrs []netip.Prefix) {
	seen := map[netip.Prefix]bool{}
	for _, p := range cidrs {
		p = p.Masked()
		if !p.IsValid() || seen[p] {
			continue
		}
		seen[p] = true
		g.add(b.fam[familyOf(p.Addr())].podCIDRs, p.String(), "", "")
	}
}

// pick returns the chain that frontends with n endpoints go to, creating it on first use.
func (b *builder) pick(n int) string { return b.pickChain(pickChain(n), n, "") }

// pickAll returns the chain that short-circuited traffic to a frontend with n endpoints in all
// goes to.
func (b *builder) pickAll(n int) string {
	return b.pickChain(pickAllChain(n), n, " offset "+itoa(shortCircuitSlot))
}

func (b *builder) pickChain(name string, n int, offset string) string {
	b.p.usePick(name)
	if b.pickDefs[name] == nil {
		var rules []string
		for _, f := range families {
			x := f.nft()
			for _, p := range protocols {
				rules = append(rules, "meta l4proto "+p+" dnat "+x+" addr . port to "+x+" daddr . "+p+" dport . numgen random mod "+
					itoa(n)+offset+" map @"+endpointsMap(f, p))
			}
		}
		b.pickDefs[name] = &chain{def: knftables.Chain{Name: name}, rules: rules}
	}
	return name
}

// frontendSpec is one address:port of a Service port and how it forwards.
type frontendSpec struct {
	addr       netip.Addr
	port       uint16
	localOnly  bool // this node's endpoints only (a Local traffic policy)
	masquerade bool
	serviceIP  bool // a ClusterIP or LoadBalancer IP: other ports are refused
	external   bool
	ingress    bool // a LoadBalancer IP: source ranges apply
	key        string
}

// frontends lists the frontends of a Service port, in the order they claim their address,
// protocol and port: IPv4 first; ClusterIPs, LoadBalancer IPs, externalIPs, NodePorts.
func (r *Renderer) frontends(sp *servicePort) []frontendSpec {
	var out []frontendSpec
	add := func(fs frontendSpec) {
		fs.key = fs.addr.String() + " . " + sp.protocol + " . " + itoa(int(fs.port))
		out = append(out, fs)
	}
	for _, f := range families {
		if r.opts.ClusterIPs {
			for _, a := range sp.clusterIPs {
				if familyOf(a) == f {
					add(frontendSpec{addr: a, port: sp.port, localOnly: sp.internalLocal, masquerade: r.opts.MasqueradeAll, serviceIP: true})
				}
			}
		}
		masq := r.opts.MasqueradeAll || !sp.externalLocal
		for _, a := range sp.ingressIPs {
			if familyOf(a) == f {
				add(frontendSpec{addr: a, port: sp.port, localOnly: sp.externalLocal, masquerade: masq, serviceIP: true, external: true, ingress: true})
			}
		}
		// externalIPs are external frontends like LoadBalancer IPs, without source ranges
		// (kube-proxy applies those to LoadBalancer IPs only). They are often the node's own
		// addresses, so other ports on them are not refused.
		for _, a := range sp.externalIPs {
			if familyOf(a) == f {
				add(frontendSpec{addr: a, port: sp.port, localOnly: sp.externalLocal, masquerade: masq, external: true})
			}
		}
		if sp.nodePort == 0 || !sp.families[f] {
			continue
		}
		for _, a := range r.nodeAddrs {
			if familyOf(a) == f {
				add(frontendSpec{addr: a, port: sp.nodePort, localOnly: sp.externalLocal, masquerade: masq, external: true})
			}
		}
	}
	return out
}

// servicePort adds the frontends of one Service port in each family.
func (b *builder) servicePort(sp *servicePort, specs []frontendSpec) {
	fe := frontendArgs{sp: sp, comment: sp.comment()}
	all := rendered(sp.endpoints)
	for _, f := range families {
		fe.cluster[f] = usable(b.topology(all, f), f, false)
		fe.local[f] = usable(all, f, true)
	}
	if sp.affinity > 0 {
		fe.affinity = newAffinity(sp)
	}
	for i := range specs {
		if specs[i].ingress {
			b.firewall(&fe, &specs[i])
		}
		b.frontend(&fe, &specs[i])
	}
}

// owns reports whether the Service port wins the frontend key k: it is the first (in
// namespace, name, protocol and port order) of the Service ports that claim it.
func (b *builder) owns(sp *servicePort, k string) bool {
	c := b.claims[k]
	return len(c) > 0 && c[0] == sp.ref()
}

// firewall restricts a LoadBalancer frontend to the Service's source ranges of its family. As in
// kube-proxy, when one of the node's addresses is in a range, the Service's LoadBalancer IPs
// are allowed as sources too: where the LoadBalancer IP is a local address, the node's own
// connections to it come from that address.
func (b *builder) firewall(fe *frontendArgs, spec *frontendSpec) {
	f, sp, k := familyOf(spec.addr), fe.sp, spec.key
	ranges := sp.sourceRanges[f]
	if len(ranges) == 0 || !b.owns(sp, k) {
		return
	}
	fs := &b.fam[f]
	if b.p.has(fs.firewall, k) {
		return
	}
	b.p.add(fs.firewall, k, "", fe.comment)
	fromNode := false
	for _, r := range ranges {
		b.p.add(fs.firewallAllow, k+" . "+r.String(), "", "")
		fromNode = fromNode || slices.ContainsFunc(b.nodeAddrs, r.Contains)
	}
	if fromNode {
		for _, a := range sp.ingressIPs {
			if familyOf(a) == f {
				b.p.add(fs.firewallAllow, k+" . "+a.String(), "", "")
			}
		}
	}
}

type frontendArgs struct {
	sp       *servicePort
	won      []string // frontend keys already added
	comment  string
	cluster  [2][]renderedEndpoint // usable endpoints per family
	local    [2][]renderedEndpoint // usable endpoints on this node per family
	affinity *affinity             // nil without ClientIP affinity
}

// renderedEndpoint is an endpoint with its strings made once for all its frontends.
type renderedEndpoint struct {
	endpoint
	addr  string
	value string // "addr . port": the endpoint element value
}

func rendered(eps []endpoint) []renderedEndpoint {
	out := make([]renderedEndpoint, len(eps))
	for i, ep := range eps {
		a := ep.addr.String()
		out[i] = renderedEndpoint{endpoint: ep, addr: a, value: a + " . " + itoa(int(ep.port))}
	}
	return out
}

// topology returns the endpoints of family f that topology hints leave for this node, as
// kube-proxy decides: when every ready endpoint has node hints and one is for this node, the
// ones hinted for this node; else when every ready endpoint has zone hints and one is for this
// node's zone, the ones hinted for it; else all. Not-ready endpoints are kept: usable falls back
// to the serving terminating ones whatever their hints.
func (b *builder) topology(eps []renderedEndpoint, f ipFamily) []renderedEndpoint {
	anyReady, allNode, forNode, allZone, forZone := false, true, false, true, false
	for _, ep := range eps {
		if familyOf(ep.endpoint.addr) != f || !ep.ready {
			continue
		}
		anyReady = true
		h := ep.hints
		if h == nil {
			h = &hints{}
		}
		allNode = allNode && len(h.nodes) > 0
		forNode = forNode || slices.Contains(h.nodes, b.node.Name)
		allZone = allZone && len(h.zones) > 0
		forZone = forZone || (b.node.Zone != "" && slices.Contains(h.zones, b.node.Zone))
	}
	var hinted func(ep *renderedEndpoint) bool
	switch {
	case !anyReady:
		return eps
	case allNode && forNode:
		hinted = func(ep *renderedEndpoint) bool { return slices.Contains(ep.hints.nodes, b.node.Name) }
	case allZone && forZone:
		hinted = func(ep *renderedEndpoint) bool { return slices.Contains(ep.hints.zones, b.node.Zone) }
	default:
		return eps
	}
	out := make([]renderedEndpoint, 0, len(eps))
	for i := range eps {
		if !eps[i].ready || hinted(&eps[i]) {
			out = append(out, eps[i])
		}
	}
	return out
}

// usable returns the endpoints of family f that traffic may go to, in the order of eps: the
// ready ones, or when none is ready the serving and terminating ones, so that connections still
// find a backend while a rollout replaces the last pods. With localOnly, only this node's
// endpoints count, and the fallback is judged among them alone.
func usable(eps []renderedEndpoint, f ipFamily, localOnly bool) []renderedEndpoint {
	var ready, terminating []renderedEndpoint
	for _, ep := range eps {
		if familyOf(ep.endpoint.addr) != f || (localOnly && !ep.local) {
			continue
		}
		switch {
		case ep.ready:
			ready = append(ready, ep)
		case ep.serving && ep.terminating:
			terminating = append(terminating, ep)
		}
	}
	if len(ready) == 0 {
		return terminating
	}
	return ready
}

// frontend adds one address:port of a Service port: the dispatch element and one endpoint
// element per endpoint, or a reject/drop element when there is no endpoint to go to, if the
// Service port owns it. With localOnly it uses this node's endpoints only; serviceIP is false
// for a NodePort, whose address is the node's and takes other traffic.
func (b *builder) frontend(fe *frontendArgs, spec *frontendSpec) {
	f, sp, p := familyOf(spec.addr), fe.sp, b.p
	fs := &b.fam[f]
	eps := fe.cluster[f]
	if spec.localOnly {
		eps = fe.local[f]
	}
	a, port := spec.addr.String(), itoa(int(spec.port))
	if spec.serviceIP {
		p.add(fs.serviceIPs, a, "", "")
	}
	k := spec.key
	if slices.Contains(fe.won, k) || !b.owns(sp, k) {
		return
	}
	fe.won = append(fe.won, k)
	if n := len(fe.cluster[f]); spec.localOnly && spec.external && n > 0 && n < shortCircuitSlot {
		// kube-proxy's short-circuit: from this node or its pods, any endpoint will do.
		endpoints := fs.endpoints[sp.protocol]
		p.add(fs.shortCircuit, k, b.gotoVerdict(b.pickAll(len(fe.cluster[f]))), fe.comment)
		for i, ep := range fe.cluster[f] {
			p.add(endpoints, a+" . "+port+" . "+itoa(shortCircuitSlot+i), ep.value, "")
		}
	}
	if len(eps) == 0 {
		// No endpoint at all: reject at once (TCP reset, ICMP port unreachable). Endpoints
		// elsewhere but none here for a Local policy: drop, as kube-proxy does; the announcer
		// does not attract this traffic to this node anyway.
		verdict := "drop"
		if len(fe.cluster[f]) == 0 {
			verdict = gotoVerdict(rejectChain)
		}
		p.add(fs.noEndpoints, k, verdict, fe.comment)
		return
	}
	target := b.pick(len(eps))
	if fe.affinity != nil {
		target = b.affinityChain(fe, spec.localOnly)
		p.add(fs.affinityFrontends, k, gotoVerdict(fe.affinity.recordChain), "")
	}
	p.add(fs.frontends, k, b.gotoVerdict(target), fe.comment)
	endpoints := fs.endpoints[sp.protocol]
	for i, ep := range eps {
		p.add(endpoints, a+" . "+port+" . "+itoa(i), ep.value, "")
		if ep.local {
			p.add(fs.local, ep.addr, "", "")
			p.add(fs.hairpin, ep.addr+" . "+ep.addr, "", "")
		}
	}
	if spec.masquerade {
		p.add(fs.masquerade, k, "", "")
	}
}
