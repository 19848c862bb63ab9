package forward

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UDP has no connection to end: a conntrack entry made by the DNAT of a UDP "connection" lives
// as long as packets keep coming (DNS, syslog, statsd, QUIC clients on a fixed source port), so
// without cleanup such a client stays pinned to a gone endpoint, or to whatever pod gets its
// address next. After each sync the speaker deletes, as kube-proxy does, the UDP entries whose
// original destination is a Service address:port (or a NodePort) and whose reply source is not
// one of that Service port's serving endpoints, and those whose original destination was a
// Service address:port that no longer exists.

// UDPTargets are the UDP frontends and their serving endpoints, for conntrack cleanup.
type UDPTargets struct {
	// ServiceIPs maps a ClusterIP, LoadBalancer IP or externalIP and port to the serving
	// endpoints of its Service port (empty: every entry to it is stale).
	ServiceIPs map[netip.AddrPort]map[netip.AddrPort]bool
	// NodePorts maps a NodePort to the serving endpoints, for Service ports that have some
	// (the node's addresses are not known to conntrack entries; kube-proxy matches the port).
	NodePorts map[uint16]map[netip.AddrPort]bool
}

// NewUDPTargets computes the UDP frontends of the Services as Render would forward them.
// Endpoints count when serving (ready, or terminating and still serving), whatever their node,
// as in kube-proxy.
func NewUDPTargets(in Input) UDPTargets {
	return udpTargets(servicePorts(in.Node.Name, in.Services, in.EndpointSlices), in.Options)
}

// udpTargets computes the UDP frontends of Service ports sorted as servicePorts sorts them.
func udpTargets(ports []*servicePort, opts Options) UDPTargets {
	t := UDPTargets{ServiceIPs: map[netip.AddrPort]map[netip.AddrPort]bool{}, NodePorts: map[uint16]map[netip.AddrPort]bool{}}
	for _, sp := range ports {
		if sp.protocol != "udp" {
			continue
		}
		eps := map[netip.AddrPort]bool{}
		for _, ep := range sp.endpoints {
			if ep.serving {
				eps[netip.AddrPortFrom(ep.addr, ep.port)] = true
			}
		}
		var addrs []netip.Addr
		if opts.ClusterIPs {
			addrs = append(addrs, sp.clusterIPs...)
		}
		addrs = append(append(addrs, sp.ingressIPs...), sp.externalIPs...)
		for _, a := range addrs {
			if k := netip.AddrPortFrom(a, sp.port); t.ServiceIPs[k] == nil {
				t.ServiceIPs[k] = eps
			}
		}
		if sp.nodePort != 0 && len(eps) > 0 && t.NodePorts[sp.nodePort] == nil {
			t.NodePorts[sp.nodePort] = eps
		}
	}
	return t
}

// stale tells whether a UDP entry sent to origDst and answered by replySrc must go. gone are
// Service addresses and ports that existed at the previous cleanup and no longer do.
func (t *UDPTargets) stale(origDst, replySrc netip.AddrPort, gone map[netip.AddrPort]bool) bool {
	if eps, ok := t.ServiceIPs[origDst]; ok {
		return !eps[replySrc]
	}
	if gone[origDst] {
		return true
	}
	if eps, ok := t.NodePorts[origDst.Port()]; ok {
		return !eps[replySrc]
	}
	return false
}

// ConntrackCleaner deletes stale UDP conntrack entries (see NewUDPTargets). It remembers the
// Service addresses of its previous run, to delete the entries of Services that went. It is
// not safe for concurrent use.
type ConntrackCleaner struct {
	prev map[netip.AddrPort]bool
}

// Clean deletes the stale UDP entries of the current network namespace, in both families,
// and returns how many it deleted.
func (c *ConntrackCleaner) Clean(t UDPTargets) (int, error) {
	gone := map[netip.AddrPort]bool{}
	for k := range c.prev {
		if _, ok := t.ServiceIPs[k]; !ok {
			gone[k] = true
		}
	}
	if len(t.ServiceIPs) == 0 && len(gone) == 0 {
		c.prev = nil
		return 0, nil // nothing to look for: no dump of the table
	}
	f := udpFilter{t: &t, gone: gone}
	var total uint
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
		total += n
		if err != nil {
			return int(total), fmt.Errorf("deleting stale UDP conntrack entries: %w", err)
		}
	}
	c.prev = make(map[netip.AddrPort]bool, len(t.ServiceIPs))
	for k := range t.ServiceIPs {
		c.prev[k] = true
	}
	return int(total), nil
}

type udpFilter struct {
	t    *UDPTargets
	gone map[netip.AddrPort]bool
}

func (f udpFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	return f.t.stale(addrPort(flow.Forward.DstIP, flow.Forward.DstPort), addrPort(flow.Reverse.SrcIP, flow.Reverse.SrcPort), f.gone)
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}
