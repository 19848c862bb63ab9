package forward

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// defaultAffinityTimeout is Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds.
const defaultAffinityTimeout = 10800 * time.Second

// servicePort is one port of one Service with everything the renderer needs: its frontends'
// addresses, its policies and its endpoints, already matched by port name and protocol.
type servicePort struct {
	namespace, name string
	portName        string
	protocol        string // nft spelling: "tcp", "udp" or "sctp"
	port            uint16
	nodePort        uint16 // 0: none
	clusterIPs      []netip.Addr
	ingressIPs      []netip.Addr // status.loadBalancer.ingress[].ip, except ipMode Proxy ones
	externalIPs     []netip.Addr // spec.externalIPs
	// sourceRanges are spec.loadBalancerSourceRanges per family, masked; empty when the family
	// has none or one of them allows every address (kube-proxy's reading).
	sourceRanges  [2][]netip.Prefix
	externalLocal bool // externalTrafficPolicy: Local
	internalLocal bool // internalTrafficPolicy: Local
	affinity      time.Duration
	families      [2]bool // the Service's IP families: NodePorts open on node addresses of these
	endpoints     []endpoint
}

type endpoint struct {
	addr        netip.Addr
	port        uint16
	local       bool // on this node
	ready       bool
	serving     bool
	terminating bool
	hints       *hints // nil without topology hints (most endpoints: keeps endpoint small)
}

// hints are an endpoint's topology hints.
type hints struct {
	zones []string // hints.forZones
	nodes []string // hints.forNodes
}

func (sp *servicePort) comment() string {
	port := sp.portName
	if port == "" {
		port = itoa(int(sp.port))
	}
	return elementComment(sp.namespace, sp.name, port)
}

func familyOf(a netip.Addr) ipFamily {
	if a.Is4() {
		return ipv4
	}
	return ipv6
}

// servicePorts extracts the ports of the Services, sorted by namespace, name and port, with
// their endpoints from the EndpointSlices. Services without a ClusterIP-like address or
// ports (ExternalName, malformed) yield nothing; unparsable addresses and ports are skipped.
func servicePorts(node string, services []*corev1.Service, epSlices []*discoveryv1.EndpointSlice) []*servicePort {
	bySvc := slicesByService(epSlices)
	var out []*servicePort
	for _, svc := range services {
		if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		out = append(out, servicePortsOf(node, svc, bySvc[svc.Namespace+"/"+svc.Name])...)
	}
	slices.SortStableFunc(out, func(a, b *servicePort) int { return comparePortRef(a.ref(), b.ref()) })
	return out
}

// servicePortsOf returns the ports of one Service, sorted by protocol and port, with their
// endpoints from the Service's EndpointSlices (sorted by name).
func servicePortsOf(node string, svc *corev1.Service, svcSlices []*discoveryv1.EndpointSlice) []*servicePort {
	var out []*servicePort
	for i := range svc.Spec.Ports {
		sp := newServicePort(svc, &svc.Spec.Ports[i])
		if sp == nil {
			continue
		}
		sp.endpoints = endpointsFor(node, &svc.Spec.Ports[i], sp.protocol, svcSlices)
		out = append(out, sp)
	}
	slices.SortStableFunc(out, func(a, b *servicePort) int { return comparePortRef(a.ref(), b.ref()) })
	return out
}

func newServicePort(svc *corev1.Service, p *corev1.ServicePort) *servicePort {
	proto := nftProtocol(p.Protocol)
	if proto == "" || p.Port < 1 || p.Port > 65535 {
		return nil
	}
	sp := &servicePort{
		namespace:     svc.Namespace,
		name:          svc.Name,
		portName:      p.Name,
		protocol:      proto,
		port:          uint16(p.Port),
		clusterIPs:    parseAddrs(clusterIPs(svc)),
		externalLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		internalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
		affinity:      affinityTimeout(svc),
	}
	nodePorts := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	if nodePorts && p.NodePort > 0 && p.NodePort <= 65535 {
		sp.nodePort = uint16(p.NodePort)
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			// ipMode Proxy: the load balancer proxies to the nodes, and packets to its
			// address must reach it, not be DNATed here (kube-proxy leaves them alone too).
			if ing.IPMode != nil && *ing.IPMode == corev1.LoadBalancerIPModeProxy {
				continue
			}
			sp.ingressIPs = append(sp.ingressIPs, parseAddrs([]string{ing.IP})...)
		}
		sp.sourceRanges = sourceRanges(svc.Spec.LoadBalancerSourceRanges)
	}
	sp.externalIPs = parseAddrs(svc.Spec.ExternalIPs)
	if !nodePorts && len(sp.externalIPs) == 0 {
		sp.externalLocal = false
	}
	sp.families = serviceFamilies(svc, sp.clusterIPs)
	return sp
}

// serviceFamilies returns spec.ipFamilies, or the families of the ClusterIPs when it is empty.
func serviceFamilies(svc *corev1.Service, clusterIPs []netip.Addr) [2]bool {
	var fams [2]bool
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			fams[ipv4] = true
		case corev1.IPv6Protocol:
			fams[ipv6] = true
		}
	}
	if len(svc.Spec.IPFamilies) == 0 {
		for _, a := range clusterIPs {
			fams[familyOf(a)] = true
		}
	}
	return fams
}

// sourceRanges parses spec.loadBalancerSourceRanges per family as kube-proxy does: spaces
// trimmed, invalid entries skipped, and a family with a /0 among its ranges is open to all.
func sourceRanges(ranges []string) [2][]netip.Prefix {
	var out [2][]netip.Prefix
	var open [2]bool
	for _, r := range ranges {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			continue
		}
		p = p.Masked()
		f := familyOf(p.Addr())
		if p.Bits() == 0 {
			open[f] = true
		}
		out[f] = append(out[f], p)
	}
	for _, f := range families {
		if open[f] {
			out[f] = nil
		}
	}
	return out
}

func clusterIPs(svc *corev1.Service) []string {
	if len(svc.Spec.ClusterIPs) > 0 {
		return svc.Spec.ClusterIPs
	}
	return []string{svc.Spec.ClusterIP}
}

// parseAddrs parses addresses, skipping "None", empty and invalid ones and dropping zones.
func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.IsUnspecified() {
			continue
		}
		out = append(out, a.Unmap())
	}
	return out
}

func nftProtocol(p corev1.Protocol) string {
	switch p {
	case "", corev1.ProtocolTCP:
		return "tcp"
	case corev1.ProtocolUDP:
		return "udp"
	case corev1.ProtocolSCTP:
		return "sctp"
	}
	return ""
}

func affinityTimeout(svc *corev1.Service) time.Duration {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return 0
	}
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		if s := *c.ClientIP.TimeoutSeconds; s > 0 {
			return time.Duration(s) * time.Second
		}
	}
	return defaultAffinityTimeout
}

// slicesByService indexes EndpointSlices by "namespace/service", in name order so that the
// first of two duplicate endpoints is always the same one.
func slicesByService(all []*discoveryv1.EndpointSlice) map[string][]*discoveryv1.EndpointSlice {
	m := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range all {
		if s == nil {
			continue
		}
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" || (s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6) {
			continue
		}
		k := s.Namespace + "/" + svc
		m[k] = append(m[k], s)
	}
	for _, ss := range m {
		slices.SortFunc(ss, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	}
	return m
}

// endpointsFor collects the endpoints of one Service port from its slices: the slice port with
// the same name and protocol gives the target port. An address listed twice (slices overlap
// while the controller moves endpoints) counts once, ready if any copy is.
func endpointsFor(node string, p *corev1.ServicePort, proto string, svcSlices []*discoveryv1.EndpointSlice) []endpoint {
	var out []endpoint
	for _, s := range svcSlices {
		port, ok := slicePort(s, p.Name, proto)
		if !ok {
			continue
		}
		for i := range s.Endpoints {
			ep, ok := newEndpoint(node, &s.Endpoints[i], port)
			if ok && familyOf(ep.addr) == addressFamily(s.AddressType) {
				out = append(out, ep)
			}
		}
	}
	// Sorted by address and port, a ready copy first, so that Compact keeps it.
	slices.SortStableFunc(out, func(a, b endpoint) int {
		return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port), -cmp.Compare(btoi(a.ready), btoi(b.ready)))
	})
	return slices.CompactFunc(out, func(a, b endpoint) bool { return a.addr == b.addr && a.port == b.port })
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func addressFamily(t discoveryv1.AddressType) ipFamily {
	if t == discoveryv1.AddressTypeIPv6 {
		return ipv6
	}
	return ipv4
}

func slicePort(s *discoveryv1.EndpointSlice, name, proto string) (uint16, bool) {
	for _, sp := range s.Ports {
		n := ""
		if sp.Name != nil {
			n = *sp.Name
		}
		pr := corev1.ProtocolTCP
		if sp.Protocol != nil {
			pr = *sp.Protocol
		}
		if n != name || nftProtocol(pr) != proto || sp.Port == nil || *sp.Port < 1 || *sp.Port > 65535 {
			continue
		}
		return uint16(*sp.Port), true
	}
	return 0, false
}

func newEndpoint(node string, e *discoveryv1.Endpoint, port uint16) (endpoint, bool) {
	if len(e.Addresses) == 0 {
		return endpoint{}, false
	}
	addrs := parseAddrs(e.Addresses[:1])
	if len(addrs) == 0 {
		return endpoint{}, false
	}
	// Per the EndpointSlice API: a nil ready means ready, a nil serving defers to ready, and
	// a nil terminating means not terminating.
	ready := e.Conditions.Ready == nil || *e.Conditions.Ready
	serving := ready
	if e.Conditions.Serving != nil {
		serving = *e.Conditions.Serving
	}
	terminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
	ep := endpoint{
		addr:        addrs[0],
		port:        port,
		local:       node != "" && e.NodeName != nil && *e.NodeName == node,
		ready:       ready,
		serving:     serving,
		terminating: terminating,
	}
	if h := e.Hints; h != nil && len(h.ForZones)+len(h.ForNodes) > 0 {
		ep.hints = &hints{}
		for _, z := range h.ForZones {
			ep.hints.zones = append(ep.hints.zones, z.Name)
		}
		for _, n := range h.ForNodes {
			ep.hints.nodes = append(ep.hints.nodes, n.Name)
		}
	}
	return ep, true
}
