package lab

import (
	"fmt"
	"net/netip"
)

// The lab's address plan. Only documentation and benchmark ranges, and only inside the lab's
// namespaces (DESIGN.md section 6):
//
//	LAN (ilb-lan bridge)          198.51.100.0/24, 2001:db8:100::/64
//	  router (BIRD)               .1,  ::1
//	  LAN client                  .2,  ::2
//	  FRR router (when asked)     .3,  ::3
//	  node i (1-based)            .10+i, ::10+i  (hex digits in IPv6, e.g. node1 = ::11)
//	  L2 pool                     198.51.100.200-198.51.100.250, 2001:db8:100::200-2001:db8:100::250
//	BGP pools                     203.0.113.0/24, 2001:db8:113::/64
//	management (ilb-ctl bridge)   192.0.2.0/25: API server .1, node i .10+i
//	external net behind router    192.0.2.128/25, 2001:db8:200::/64: router .129/::1, client .130/::2
//	pods on node i                198.19.i.0/24 (gateway .1, pod j at .10+j), 2001:db8:19:i::/64
//	Service ClusterIPs            198.18.0.0/16, 2001:db8:18::/112
//
// ASNs are from the documentation range (RFC 5398): routers 64496, nodes 64497.
const (
	RouterASN = 64496
	NodeASN   = 64497
	APIPort   = 6443
)

// Fixed addresses of the lab.
var (
	LANPrefix4     = netip.MustParsePrefix("198.51.100.0/24")
	LANPrefix6     = netip.MustParsePrefix("2001:db8:100::/64")
	RouterLAN4     = netip.MustParseAddr("198.51.100.1")
	RouterLAN6     = netip.MustParseAddr("2001:db8:100::1")
	ClientLAN4     = netip.MustParseAddr("198.51.100.2")
	ClientLAN6     = netip.MustParseAddr("2001:db8:100::2")
	FRRLAN4        = netip.MustParseAddr("198.51.100.3")
	FRRLAN6        = netip.MustParseAddr("2001:db8:100::3")
	APIServerAddr  = netip.MustParseAddr("192.0.2.1")
	RouterExt4     = netip.MustParseAddr("192.0.2.129")
	RouterExt6     = netip.MustParseAddr("2001:db8:200::1")
	ExtClient4     = netip.MustParseAddr("192.0.2.130")
	ExtClient6     = netip.MustParseAddr("2001:db8:200::2")
	L2Pool         = []string{"198.51.100.200-198.51.100.250", "2001:db8:100::200-2001:db8:100::250"}
	BGPPool        = []string{"203.0.113.0/24", "2001:db8:113::/64"}
	ServiceCIDR    = "198.18.0.0/16,2001:db8:18::/112"
	mgmtPrefixBits = 25
	extPrefixBits  = 25
)

// MaxNodes bounds the node index so every derived address stays inside its range.
const MaxNodes = 100

func nodeLAN4(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}) }
func nodeLAN6(i int) netip.Addr { return mustAddr(fmt.Sprintf("2001:db8:100::%x", 0x10+i)) }
func nodeMgmt(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}) }
func podCIDR4(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24)
}
func podCIDR6(i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("2001:db8:19:%x::/64", i))
}

// podAddrs returns pod j's addresses on node i and the node's gateway addresses.
func podAddrs(i, j int) (v4, v6, gw4, gw6 netip.Addr) {
	p4, p6 := podCIDR4(i).Addr().As4(), podCIDR6(i).Addr().As16()
	v4 = netip.AddrFrom4([4]byte{p4[0], p4[1], p4[2], byte(10 + j)})
	g4 := p4
	g4[3] = 1
	a6, g6 := p6, p6
	a6[14], a6[15] = byte((10+j)>>8), byte(10+j)
	g6[15] = 1
	return v4, netip.AddrFrom16(a6), netip.AddrFrom4(g4), netip.AddrFrom16(g6)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
