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
// address, protocol and port, the first in namespace/name order wins.
func Render(in Input) *Ruleset {
	b := &builder{r: newRuleset(), opts: in.Options, node: in.Node.Name, zone: in.Node.Zone, nodeAddrs: nodePortAddresses(in.Node.Addresses), verdicts: map[string]string{}}
	b.skeleton()
	b.podCIDRs(in.Node.PodCIDRs)
	sps := servicePorts(in.Node.Name, in.Services, in.EndpointSlices)
	b.reserve(sps)
	for _, sp := range sps {
		b.servicePort(sp)
	}
	return b.r
}

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

type builder struct {
	r         *Ruleset
	opts      Options
	node      string
	zone      string
	nodeAddrs []netip.Addr
	fam       [2]familySets
	verdicts  map[string]string // chain -> "goto chain", made once
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

// reserve sizes the sets for the Service ports about to be added, from an upper bound of
// their frontends and endpoint elements: growing maps of 100,000s of entries step by step
// costs more than rendering them.
func (b *builder) reserve(sps []*servicePort) {
	var frontends [2]int
	endpoints := [2]map[string]int{{}, {}}
	for _, sp := range sps {
		var eps [2]int
		for _, ep := range sp.endpoints {
			eps[familyOf(ep.addr)]++
		}
		var n [2]int
		if b.opts.ClusterIPs {
			for _, a := range sp.clusterIPs {
				n[familyOf(a)]++
			}
		}
		for _, a := range sp.ingressIPs {
			n[familyOf(a)]++
		}
		for _, a := range sp.externalIPs {
			n[familyOf(a)]++
		}
		if sp.nodePort != 0 {
			for _, a := range b.nodeAddrs {
				if sp.families[familyOf(a)] {
					n[familyOf(a)]++
				}
			}
		}
		for _, f := range families {
			frontends[f] += n[f]
			endpoints[f][sp.protocol] += n[f] * eps[f]
		}
	}
	for _, f := range families {
		b.fam[f].frontends.reserve(frontends[f])
		b.fam[f].masquerade.reserve(frontends[f])
		b.fam[f].serviceIPs.reserve(frontends[f])
		for p, n := range endpoints[f] {
			b.fam[f].endpoints[p].reserve(n)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func baseChain(name string, t knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority) knftables.Chain {
	return knftables.Chain{Name: name, Type: &t, Hook: &hook, Priority: &prio}
}

// l4 is the transport match that nft requires before a port mapping or a ct proto-dst.
// It is an anonymous set, but one per shared rule, never one per Service.
const l4 = "meta l4proto { tcp, udp, sctp }"

// skeleton adds the chains, rules, sets and maps that do not depend on the Services.
func (b *builder) skeleton() {
	r := b.r
	// nft 1.0.6 accepts the name "dstnat" only in prerouting; -100 is its value.
	r.addChain(baseChain(natPreroutingChain, knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority), "jump "+servicesChain)
	r.addChain(baseChain(natOutputChain, knftables.NATType, knftables.OutputHook, "-100"), "jump "+servicesChain)
	r.addChain(baseChain(natPostroutingChain, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority),
		"jump "+affinityRecordChain, "jump "+masqueradingChain)
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
	}{{filterInputChain, knftables.InputHook}, {filterForwardChain, knftables.ForwardHook}, {filterOutputChain, knftables.OutputHook}} {
		r.addChain(baseChain(c.name, knftables.FilterType, c.hook, knftables.FilterPriority), "ct state new jump "+endpointsCheckChain)
	}
	// loadBalancerSourceRanges are checked before DNAT, where the destination is still the
	// LoadBalancer IP, for traffic from outside and from the node itself (as kube-proxy does).
	r.addChain(baseChain(filterPreroutingPreDNATChain, knftables.FilterType, knftables.PreroutingHook, "-110"), "ct state new jump "+firewallCheckChain)
	r.addChain(baseChain(filterOutputPreDNATChain, knftables.FilterType, knftables.OutputHook, "-110"), "ct state new jump "+firewallCheckChain)
	r.addChain(knftables.Chain{Name: firewallCheckChain})
	r.addChain(knftables.Chain{Name: servicesChain})
	r.addChain(knftables.Chain{Name: endpointsCheckChain})
	// TCP gets a reset, anything else ICMP port unreachable: both fail the client's connect at
	// once, and resets are not subject to the kernel's ICMP rate limits.
	r.addChain(knftables.Chain{Name: rejectChain}, "meta l4proto tcp reject with tcp reset", "reject")
	r.addChain(knftables.Chain{Name: masqueradingChain})
	r.addChain(knftables.Chain{Name: affinityRecordChain})
	for _, f := range families {
		b.familySkeleton(f)
	}
}

func (b *builder) familySkeleton(f ipFamily) {
	r, x, a, fs := b.r, f.nft(), f.addrType(), &b.fam[f]
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
func (b *builder) podCIDRs(cidrs []netip.Prefix) {
	g := b.r.startGroup("node pod CIDRs") // no Service port key has spaces
	seen := map[netip.Prefix]bool{}
	for _, p := range cidrs {
		p = p.Masked()
		if !p.IsValid() || seen[p] {
			continue
		}
		seen[p] = true
		g.addTo(b.fam[familyOf(p.Addr())].podCIDRs, p.String(), "", "")
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
	if !b.r.hasChain(name) {
		var rules []string
		for _, f := range families {
			x := f.nft()
			for _, p := range protocols {
				rules = append(rules, "meta l4proto "+p+" dnat "+x+" addr . port to "+x+" daddr . "+p+" dport . numgen random mod "+
					itoa(n)+offset+" map @"+endpointsMap(f, p))
			}
		}
		b.r.addChain(knftables.Chain{Name: name}, rules...)
	}
	return name
}

// servicePort adds the frontends of one Service port in each family.
func (b *builder) servicePort(sp *servicePort) {
	fe := frontendArgs{sp: sp, comment: sp.comment(), group: b.r.startGroup(sp.key())}
	all := rendered(sp.endpoints)
	for _, f := range families {
		fe.cluster[f] = usable(b.topology(all, f), f, false)
		fe.local[f] = usable(all, f, true)
	}
	if sp.affinity > 0 {
		fe.affinity = newAffinity(sp)
	}
	for _, f := range families {
		if b.opts.ClusterIPs {
			for _, a := range sp.clusterIPs {
				if familyOf(a) == f {
					b.frontend(&fe, a, sp.port, sp.internalLocal, b.opts.MasqueradeAll, true, false)
				}
			}
		}
		masq := b.opts.MasqueradeAll || !sp.externalLocal
		for _, a := range sp.ingressIPs {
			if familyOf(a) == f {
				b.firewall(&fe, a)
				b.frontend(&fe, a, sp.port, sp.externalLocal, masq, true, true)
			}
		}
		// externalIPs are external frontends like LoadBalancer IPs, without source ranges
		// (kube-proxy applies those to LoadBalancer IPs only). They are often the node's own
		// addresses, so other ports on them are not refused.
		for _, a := range sp.externalIPs {
			if familyOf(a) == f {
				b.frontend(&fe, a, sp.port, sp.externalLocal, masq, false, true)
			}
		}
		if sp.nodePort == 0 || !sp.families[f] {
			continue
		}
		for _, a := range b.nodeAddrs {
			if familyOf(a) == f {
				b.frontend(&fe, a, sp.nodePort, sp.externalLocal, masq, false, true)
			}
		}
	}
}

// firewall restricts a LoadBalancer frontend to the Service's source ranges of its family. As in
// kube-proxy, when one of the node's addresses is in a range, the Service's LoadBalancer IPs
// are allowed as sources too: where the LoadBalancer IP is a local address, the node's own
// connections to it come from that address.
func (b *builder) firewall(fe *frontendArgs, addr netip.Addr) {
	f, sp := familyOf(addr), fe.sp
	ranges := sp.sourceRanges[f]
	if len(ranges) == 0 {
		return
	}
	fs := &b.fam[f]
	k := addr.String() + " . " + sp.protocol + " . " + itoa(int(sp.port))
	if fs.firewall.has(k) {
		return
	}
	fe.group.addTo(fs.firewall, k, "", fe.comment)
	fromNode := false
	for _, r := range ranges {
		fe.group.addTo(fs.firewallAllow, k+" . "+r.String(), "", "")
		fromNode = fromNode || slices.ContainsFunc(b.nodeAddrs, r.Contains)
	}
	if fromNode {
		for _, a := range sp.ingressIPs {
			if familyOf(a) == f {
				fe.group.addTo(fs.firewallAllow, k+" . "+a.String(), "", "")
			}
		}
	}
}

type frontendArgs struct {
	sp       *servicePort
	group    *group
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
		forNode = forNode || slices.Contains(h.nodes, b.node)
		allZone = allZone && len(h.zones) > 0
		forZone = forZone || (b.zone != "" && slices.Contains(h.zones, b.zone))
	}
	var hinted func(ep *renderedEndpoint) bool
	switch {
	case !anyReady:
		return eps
	case allNode && forNode:
		hinted = func(ep *renderedEndpoint) bool { return slices.Contains(ep.hints.nodes, b.node) }
	case allZone && forZone:
		hinted = func(ep *renderedEndpoint) bool { return slices.Contains(ep.hints.zones, b.zone) }
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
// element per endpoint, or a reject/drop element when there is no endpoint to go to. With
// localOnly it uses this node's endpoints only; serviceIP is false for a NodePort, whose address
// is the node's and takes other traffic.
func (b *builder) frontend(fe *frontendArgs, addr netip.Addr, port uint16, localOnly, masquerade, serviceIP, external bool) {
	f, sp := familyOf(addr), fe.sp
	fs := &b.fam[f]
	eps := fe.cluster[f]
	if localOnly {
		eps = fe.local[f]
	}
	a, p := addr.String(), itoa(int(port))
	if serviceIP {
		fe.group.addTo(fs.serviceIPs, a, "", "")
	}
	k := a + " . " + sp.protocol + " . " + p
	if fs.frontends.has(k) || fs.noEndpoints.has(k) {
		return
	}
	if n := len(fe.cluster[f]); localOnly && external && n > 0 && n < shortCircuitSlot {
		// kube-proxy's short-circuit: from this node or its pods, any endpoint will do.
		endpoints := fs.endpoints[sp.protocol]
		fe.group.addTo(fs.shortCircuit, k, b.gotoVerdict(b.pickAll(len(fe.cluster[f]))), fe.comment)
		for i, ep := range fe.cluster[f] {
			fe.group.addTo(endpoints, a+" . "+p+" . "+itoa(shortCircuitSlot+i), ep.value, "")
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
		fe.group.addTo(fs.noEndpoints, k, verdict, fe.comment)
		return
	}
	target := b.pick(len(eps))
	if fe.affinity != nil {
		target = b.affinityChain(fe, localOnly)
		fe.group.addTo(fs.affinityFrontends, k, gotoVerdict(fe.affinity.recordChain), "")
	}
	fe.group.addTo(fs.frontends, k, b.gotoVerdict(target), fe.comment)
	endpoints := fs.endpoints[sp.protocol]
	for i, ep := range eps {
		fe.group.addTo(endpoints, a+" . "+p+" . "+itoa(i), ep.value, "")
		if ep.local {
			fe.group.addTo(fs.local, ep.addr, "", "")
			fe.group.addTo(fs.hairpin, ep.addr+" . "+ep.addr, "", "")
		}
	}
	if masquerade {
		fe.group.addTo(fs.masquerade, k, "", "")
	}
}
