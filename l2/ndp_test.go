package l2

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
)

// ndpLAN is a LAN for NDP tests: a bridge with an announcer node "a" and a client "c".
type ndpLAN struct {
	*testNet
	br, a, c     string
	macA, macC   mac
	client       netip.Addr
	owned, other netip.Addr
}

func newNDPLAN(t *testing.T) *ndpLAN {
	n := newTestNet(t)
	l := &ndpLAN{testNet: n, br: n.ns("br"), a: n.ns("a"), c: n.ns("c"),
		client: netip.MustParseAddr("2001:db8:100::2"),
		owned:  netip.MustParseAddr("2001:db8:100::200"),
		other:  netip.MustParseAddr("2001:db8:100::201"),
	}
	n.bridge(l.br, "br0")
	n.port(l.br, "br0", "pa", l.a, "eth0")
	n.port(l.br, "br0", "pc", l.c, "eth0")
	n.addr(l.a, "eth0", "2001:db8:100::10/64")
	n.addr(l.c, "eth0", l.client.String()+"/64")
	l.macA, l.macC = n.mac(l.a, "eth0"), n.mac(l.c, "eth0")
	return l
}

// na is a Neighbor Advertisement as seen on the wire.
type na struct {
	ethDst, ethSrc      mac
	src, dst, target    netip.Addr
	solicited, override bool
	tlla                mac
}

// parseAdvertisementFrame parses an Ethernet frame holding a Neighbor Advertisement with a
// Target Link-Layer Address option and a correct checksum.
func parseAdvertisementFrame(b []byte) (na, bool) {
	var a na
	if len(b) < 86 || binary.BigEndian.Uint16(b[12:14]) != etherTypeIPv6 || b[20] != protoICMPv6 || b[54] != icmpTypeNA {
		return a, false
	}
	a.ethDst, a.ethSrc = mac(b[0:6]), mac(b[6:12])
	a.src, a.dst = netip.AddrFrom16([16]byte(b[22:38])), netip.AddrFrom16([16]byte(b[38:54]))
	plen := int(binary.BigEndian.Uint16(b[18:20]))
	if 54+plen > len(b) || icmpv6Checksum(a.src, a.dst, b[54:54+plen]) != 0 || b[21] != 255 {
		return a, false
	}
	a.solicited, a.override = b[58]&naFlagSolic != 0, b[58]&naFlagOverr != 0
	a.target = netip.AddrFrom16([16]byte(b[62:78]))
	if b[78] != optTargetLLA || b[79] != 1 {
		return a, false
	}
	a.tlla = mac(b[80:86])
	return a, true
}

func TestNDPAnswersSolicitations(t *testing.T) {
	l := newNDPLAN(t)
	a, _ := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	a.SetOwned(map[netip.Addr][]string{l.owned: {"eth0"}})
	waitUp(t, a, Link{"eth0", NDP})
	s := sniff(t, l.c, "eth0", etherTypeIPv6)
	time.Sleep(1100 * time.Millisecond) // let the gratuitous burst pass
	s.drain()

	snm := func(ip netip.Addr) netip.Addr { return solicitedNode(ip) }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  *na // nil: no answer
	}{
		{name: "a multicast solicitation to the solicited-node group is answered, solicited, to the source link-layer address",
			frame: solicitationFrame(multicastMAC(snm(l.owned)), l.macC, l.client, snm(l.owned), l.owned, &l.macC),
			want:  &na{ethDst: l.macC, ethSrc: l.macA, dst: l.client, target: l.owned, solicited: true, override: true, tlla: l.macA}},
		{name: "a unicast NUD probe to the owned address and our MAC is answered",
			frame: solicitationFrame(l.macA, l.macC, l.client, l.owned, l.owned, &l.macC),
			want:  &na{ethDst: l.macC, ethSrc: l.macA, dst: l.client, target: l.owned, solicited: true, override: true, tlla: l.macA}},
		{name: "a unicast NUD probe without source link-layer option is answered to the frame's source",
			frame: solicitationFrame(l.macA, l.macC, l.client, l.owned, l.owned, nil),
			want:  &na{ethDst: l.macC, ethSrc: l.macA, dst: l.client, target: l.owned, solicited: true, override: true, tlla: l.macA}},
		{name: "duplicate address detection for the owned address is answered to all nodes",
			frame: solicitationFrame(multicastMAC(snm(l.owned)), l.macC, netip.IPv6Unspecified(), snm(l.owned), l.owned, nil),
			want:  &na{ethDst: multicastMAC(allNodes), ethSrc: l.macA, dst: allNodes, target: l.owned, override: true, tlla: l.macA}},
		{name: "a solicitation for an unowned address is not answered",
			frame: solicitationFrame(multicastMAC(snm(l.other)), l.macC, l.client, snm(l.other), l.other, &l.macC)},
		{name: "a unicast probe for an unowned address is not answered",
			frame: solicitationFrame(l.macA, l.macC, l.client, l.other, l.other, &l.macC)},
		{name: "a solicitation with hop limit 254 is not answered",
			frame: func() []byte {
				b := solicitationFrame(l.macA, l.macC, l.client, l.owned, l.owned, &l.macC)
				b[21] = 254
				return b
			}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.send(t, tc.frame)
			got := s.collect(300*time.Millisecond, func(b []byte) bool { _, ok := parseAdvertisementFrame(b); return ok })
			if tc.want == nil {
				if len(got) != 0 {
					t.Errorf("%d advertisements, want none", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d advertisements, want exactly 1", len(got))
			}
			ad, _ := parseAdvertisementFrame(got[0].b)
			// The source is a's link-local address.
			if !ad.src.IsLinkLocalUnicast() {
				t.Errorf("source %s, want a's link-local address", ad.src)
			}
			ad.src = netip.Addr{}
			if ad != *tc.want {
				t.Errorf("advertisement\n got %+v\nwant %+v", ad, *tc.want)
			}
		})
	}

	t.Run("the solicited-node group is joined on the interface, and left with the IP", func(t *testing.T) {
		group := solicitedNode(l.owned).String()
		if out := l.must("", "ip", "-n", l.a, "-6", "maddr", "show", "dev", "eth0"); !strings.Contains(out, group) {
			t.Errorf("%s not joined on eth0:\n%s", group, out)
		}
		a.SetOwned(nil)
		if !waitFor(2*time.Second, func() bool {
			return !strings.Contains(l.must("", "ip", "-n", l.a, "-6", "maddr", "show", "dev", "eth0"), group)
		}) {
			t.Errorf("%s still joined after the IP was given up", group)
		}
	})

	t.Run("removal stops answers at once", func(t *testing.T) {
		a.SetOwned(map[netip.Addr][]string{l.other: {"eth0"}})
		waitUp(t, a, Link{"eth0", NDP})
		a.SetOwned(map[netip.Addr][]string{})
		s.drain()
		s.send(t, solicitationFrame(l.macA, l.macC, l.client, l.other, l.other, &l.macC))
		if got := s.collect(300*time.Millisecond, func(b []byte) bool { _, ok := parseAdvertisementFrame(b); return ok && b[59] != 0 }); len(got) != 0 {
			t.Errorf("%d advertisements after removal", len(got))
		}
	})
}

// TestNDPLinuxClient lets the client's kernel resolve the owned IPv6 address (a multicast
// solicitation) and then confirm it with its own unicast NUD probe.
func TestNDPLinuxClient(t *testing.T) {
	l := newNDPLAN(t)
	// Probe 1 s after a stale entry is used, instead of 5 s.
	l.must(l.c, "sysctl", "-qw", "net.ipv6.neigh.eth0.delay_first_probe_time=1")
	a, _ := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	a.SetOwned(map[netip.Addr][]string{l.owned: {"eth0"}})
	waitUp(t, a, Link{"eth0", NDP})
	probes := sniff(t, l.a, "eth0", etherTypeIPv6)

	touch(t, l.c, l.owned)
	var got string
	if !waitFor(2*time.Second, func() bool {
		got = l.neigh(l.c, "eth0", l.owned)
		return strings.Contains(got, l.macA.String()) && strings.Contains(got, "REACHABLE")
	}) {
		t.Fatalf("after resolution, client's entry %q, want %s REACHABLE", got, l.macA)
	}

	l.must("", "ip", "-n", l.c, "-6", "neigh", "change", l.owned.String(), "dev", "eth0", "lladdr", l.macA.String(), "nud", "stale")
	probes.drain()
	before := a.Stats()[Link{"eth0", NDP}].Replies
	touch(t, l.c, l.owned) // STALE -> DELAY -> (1 s) PROBE: a unicast solicitation to a's MAC
	if !waitFor(4*time.Second, func() bool {
		got = l.neigh(l.c, "eth0", l.owned)
		return strings.Contains(got, "REACHABLE")
	}) {
		t.Fatalf("after the NUD probe, client's entry %q, want REACHABLE", got)
	}
	unicast := probes.collect(0, func(b []byte) bool {
		ns, err := parseSolicitation(b)
		return err == nil && ns.ethDst == l.macA && ns.dst == l.owned && ns.target == l.owned
	})
	if len(unicast) == 0 {
		t.Errorf("no unicast NUD probe from the client's kernel was seen")
	}
	if r := a.Stats()[Link{"eth0", NDP}].Replies; r <= before {
		t.Errorf("replies %d, not more than %d before the probe", r, before)
	}
	t.Logf("kernel NUD probes seen: %d; client entry: %s", len(unicast), got)
}

// TestRawICMPv6SocketMissesUnicastProbes shows why solicitations are read from a packet
// socket: a raw ICMPv6 socket (mdlayher/ndp's Conn) on the announcer's interface receives a
// multicast solicitation for a group it joined, but not a unicast NUD probe for an address
// the node does not have, although the probe reaches the interface (the packet socket sees
// it).
func TestRawICMPv6SocketMissesUnicastProbes(t *testing.T) {
	for _, forwarding := range []string{"0", "1"} {
		t.Run("forwarding="+forwarding, func(t *testing.T) {
			l := newNDPLAN(t)
			l.must(l.a, "sysctl", "-qw", "net.ipv6.conf.all.forwarding="+forwarding)
			var conn *ndp.Conn
			if err := inNetNS(l.a, func() error {
				ifi, err := net.InterfaceByName("eth0")
				if err != nil {
					return err
				}
				conn, _, err = ndp.Listen(ifi, ndp.LinkLocal)
				if err != nil {
					return err
				}
				return conn.JoinGroup(solicitedNode(l.owned))
			}); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			raw := make(chan ndp.Message, 10)
			go func() {
				for {
					m, _, _, err := conn.ReadFrom()
					if err != nil {
						return
					}
					if _, ok := m.(*ndp.NeighborSolicitation); ok {
						raw <- m
					}
				}
			}()
			packetSock := sniff(t, l.a, "eth0", etherTypeIPv6)
			client := sniff(t, l.c, "eth0", etherTypeIPv6)
			isNS := func(b []byte) bool { _, err := parseSolicitation(b); return err == nil }
			rawCount := func() int {
				n := 0
				for timeout := time.After(300 * time.Millisecond); ; {
					select {
					case <-raw:
						n++
					case <-timeout:
						return n
					}
				}
			}

			client.send(t, solicitationFrame(l.macA, l.macC, l.client, l.owned, l.owned, &l.macC))
			if n := rawCount(); n != 0 {
				t.Errorf("the raw ICMPv6 socket received %d unicast probes", n)
			}
			if n := len(packetSock.collect(0, isNS)); n != 1 {
				t.Errorf("the packet socket received %d unicast probes, want 1", n)
			}
			snm := solicitedNode(l.owned)
			client.send(t, solicitationFrame(multicastMAC(snm), l.macC, l.client, snm, l.owned, &l.macC))
			if n := rawCount(); n != 1 {
				t.Errorf("the raw ICMPv6 socket received %d multicast solicitations, want 1", n)
			}
		})
	}
}
