package forward

import (
	"net/netip"

	"sigs.k8s.io/knftables"
)

// ClientIP affinity follows kube-proxy's layout, which needs no state outside nftables and no
// cleanup: one timed set of client addresses per endpoint of the Service port.
//
//   - In prerouting, the frontend's dispatch element goes to the Service port's affinity chain
//     (affinity-local-... for externalTrafficPolicy Local frontends): one rule per endpoint,
//     "client in this endpoint's set: DNAT to it", then on to the shared pick-N chain.
//   - In postrouting, after the DNAT, affinity-record looks the connection's original
//     destination up in affinity-frontends and goes to the Service port's record chain, which
//     adds (or refreshes) the client in the set of the endpoint the connection went to, with
//     the Service's timeout.
//
// When an endpoint goes, its set and its rules go in the same transaction, so no client is
// sent to a gone endpoint. The sets are per Service, so loading costs grow with the square of
// the number of affinity endpoints (nftables looks sets up by name in a list): fine for the
// few Services that ask for affinity, and why nothing else uses per-Service sets. A shared
// client.frontend -> endpoint map would avoid that, but nft 1.0.6 cannot write a map with an
// IPv6 concatenated key from the packet path (it aborts on register allocation).

// affinity holds the per-Service-port names of one Service port with ClientIP affinity.
type affinity struct {
	sp          *servicePort
	base        string // hashed name of the Service port
	recordChain string
}

func newAffinity(sp *servicePort) *affinity {
	base := servicePortName(sp)
	return &affinity{sp: sp, base: base, recordChain: affinityRecordChainPrefix + base}
}

// affinityChain returns the prerouting chain for the frontends of fe with the given scope,
// creating it, the endpoints' sets and their record rules on first use.
func (b *builder) affinityChain(fe *frontendArgs, localOnly bool) string {
	aff := fe.affinity
	name := affinityChainPrefix + aff.base
	eps := fe.cluster
	if localOnly {
		name, eps = affinityLocalChainPrefix+aff.base, fe.local
	}
	if b.p.chain(name) != nil {
		return name
	}
	b.p.addChain(knftables.Chain{Name: aff.recordChain})
	var rules []string
	for _, f := range families {
		for _, ep := range eps[f] {
			rules = append(rules, b.affinityEndpoint(aff, f, ep))
		}
	}
	for _, f := range families {
		if len(eps[f]) > 0 {
			rules = append(rules, "meta nfproto "+[...]string{"ipv4", "ipv6"}[f]+" goto "+b.pick(len(eps[f])))
		}
	}
	b.p.addChain(knftables.Chain{Name: name}, rules...)
	return name
}

// affinityEndpoint adds the client set of one endpoint and its record rule (once), and returns
// the prerouting rule that sends the set's clients to the endpoint.
func (b *builder) affinityEndpoint(aff *affinity, f ipFamily, ep renderedEndpoint) string {
	x, proto, set := f.nft(), aff.sp.protocol, affinitySetPrefix+endpointName(aff.sp, ep.endpoint)
	dest := netip.AddrPortFrom(ep.endpoint.addr, ep.port).String()
	if b.p.set(set) == nil {
		b.p.addSet(knftables.Set{Name: set, Type: f.addrType(),
			Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}, Timeout: knftables.PtrTo(aff.sp.affinity)})
		b.p.addChain(knftables.Chain{Name: aff.recordChain},
			x+" daddr "+ep.addr+" "+proto+" dport "+itoa(int(ep.port))+" update @"+set+" { "+x+" saddr }")
	}
	return x + " saddr @" + set + " meta l4proto " + proto + " dnat " + x + " to " + dest
}
