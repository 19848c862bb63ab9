package l2

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
)

// TestGratuitousARPFormsOnLinux sends each form of gratuitous ARP to a Linux neighbour (a
// client namespace with default sysctls: arp_accept 0) that has an entry for the IP with
// the old owner's MAC, or none, and checks whether the entry moves to the new MAC.
//
// What Linux does (net/ipv4/arp.c, arp_process and arp_is_garp): an ARP packet with sender
// IP equal to target IP is gratuitous, a reply only if its target hardware address also
// equals the sender's. A gratuitous packet overrides an existing entry at once; any other
// packet only if the entry was last updated more than locktime (1 s) ago. With arp_accept 0
// no form creates a missing entry (the client then asks, and the owner answers). So the
// request form (RFC 5227's announcement) and a reply whose target hardware address is the
// sender's always work, while the reply with the broadcast address as target hardware
// address (MetalLB's form) is ignored for a second after the client last heard from the old
// owner, which is exactly when a failover happens.
func TestGratuitousARPFormsOnLinux(t *testing.T) {
	l := newARPLAN(t)
	oldMAC := mac{0x02, 0, 0, 0, 0, 0x01}
	newMAC := l.macA0
	s := sniff(t, l.a, "eth0", etherTypeARP)

	type form struct {
		name  string
		frame func(ip netip.Addr) []byte
	}
	build := func(op uint16, tha mac) func(netip.Addr) []byte {
		return func(ip netip.Addr) []byte {
			g := gratuitousARP(op, newMAC, ip)
			g.targetMAC = tha
			return appendARP(nil, &g)
		}
	}
	forms := []form{
		{"request, target MAC zero (RFC 5227 announcement, ours)", build(arpRequest, mac{})},
		{"request, target MAC broadcast", build(arpRequest, broadcastMAC)},
		{"reply, target MAC = sender MAC (ours)", build(arpReply, newMAC)},
		{"reply, target MAC broadcast (MetalLB)", build(arpReply, broadcastMAC)},
	}
	type entry struct {
		name  string
		state string // "" for no entry
		old   bool   // last updated more than locktime ago
	}
	entries := []entry{
		{"no entry", "", false},
		{"REACHABLE, updated 1.1 s ago", "reachable", true},
		{"STALE, updated 1.1 s ago", "stale", true},
		{"REACHABLE, just updated", "reachable", false},
		{"STALE, just updated", "stale", false},
	}
	// want[form][entry]: does the entry end up with the new MAC?
	want := [][]bool{
		{false, true, true, true, true},
		{false, true, true, true, true},
		{false, true, true, true, true},
		{false, true, true, false, false},
	}

	ipFor := func(f, e int) netip.Addr {
		return netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + f*len(entries) + e)})
	}
	set := func(old bool) {
		for f := range forms {
			for e, en := range entries {
				if en.state != "" && en.old == old {
					l.must("", "ip", "-n", l.c, "neigh", "replace", ipFor(f, e).String(), "lladdr", oldMAC.String(), "dev", "eth0", "nud", en.state)
				}
			}
		}
	}
	set(true)
	time.Sleep(1100 * time.Millisecond) // Linux's default locktime is 1 s
	set(false)
	for f, fm := range forms {
		for e := range entries {
			s.send(t, fm.frame(ipFor(f, e)))
		}
	}
	time.Sleep(200 * time.Millisecond)

	var table strings.Builder
	fmt.Fprintf(&table, "entry moved to the new MAC?\n%-58s", "")
	for _, en := range entries {
		fmt.Fprintf(&table, " | %-28s", en.name)
	}
	for f, fm := range forms {
		fmt.Fprintf(&table, "\n%-58s", fm.name)
		for e, en := range entries {
			got := l.neigh(l.c, "eth0", ipFor(f, e))
			moved := strings.Contains(got, newMAC.String())
			fmt.Fprintf(&table, " | %-28v", moved)
			if moved != want[f][e] {
				t.Errorf("%s, %s: entry %q; moved = %v, want %v", fm.name, en.name, got, moved, want[f][e])
			}
			if !moved && en.state != "" && !strings.Contains(got, oldMAC.String()) {
				t.Errorf("%s, %s: entry %q lost the old MAC without taking the new", fm.name, en.name, got)
			}
		}
	}
	t.Log(table.String())
}

// TestAnnouncerGratuitousBurst checks the burst on the wire: GratuitousCount rounds,
// GratuitousInterval apart, each a request and a reply form for IPv4 and one unsolicited
// advertisement for IPv6; and that an IP that stays owned causes none.
func TestAnnouncerGratuitousBurst(t *testing.T) {
	l := newARPLAN(t)
	l.addr(l.a, "eth0", "2001:db8:100::10/64")
	l.addr(l.c, "eth0", "2001:db8:100::2/64")
	arpSniff := sniff(t, l.c, "eth0", etherTypeARP)
	ndpSniff := sniff(t, l.c, "eth0", etherTypeIPv6)
	cfg := DefaultAnnouncerConfig()
	cfg.GratuitousCount, cfg.GratuitousInterval = 3, 200*time.Millisecond
	a, _ := startAnnouncer(t, l.a, cfg)
	ip4, ip6 := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:100::200")

	start := time.Now()
	a.SetOwned(map[netip.Addr][]string{ip4: {"eth0"}, ip6: {"eth0"}})
	isGARP := func(b []byte) bool {
		var f ethernet.Frame
		if f.UnmarshalBinary(b) != nil || f.EtherType != ethernet.EtherTypeARP || len(b) < 42 {
			return false
		}
		return netip.AddrFrom4([4]byte(b[28:32])) == ip4 && netip.AddrFrom4([4]byte(b[38:42])) == ip4
	}
	isNA := func(b []byte) bool {
		na, ok := parseAdvertisementFrame(b)
		return ok && na.target == ip6 && !na.solicited && na.override && na.dst == allNodes
	}
	garps := arpSniff.collect(900*time.Millisecond, isGARP)
	elapsed := time.Since(start)
	nas := ndpSniff.collect(0, isNA)
	if len(garps) != 6 {
		t.Errorf("%d gratuitous ARP frames in %v, want 6 (3 rounds of request and reply)", len(garps), elapsed)
	}
	if len(nas) != 3 {
		t.Errorf("%d unsolicited advertisements, want 3", len(nas))
	}
	for i, c := range garps {
		g := c.b
		wantOp := []uint16{arpRequest, arpReply}[i%2]
		if op := uint16(g[20])<<8 | uint16(g[21]); op != wantOp || mac(g[6:12]) != l.macA0 || mac(g[0:6]) != broadcastMAC {
			t.Errorf("frame %d: operation %d from %s to %s, want %d from %s to broadcast", i, op, mac(g[6:12]), mac(g[0:6]), wantOp, l.macA0)
		}
	}

	// Rounds are GratuitousInterval apart (within 100 ms: the machine is shared).
	for i := 2; i < len(garps); i += 2 {
		if gap := garps[i].at.Sub(garps[i-2].at); gap < 150*time.Millisecond || gap > 300*time.Millisecond {
			t.Errorf("round %d came %v after round %d, want about 200ms", i/2, gap, i/2-1)
		}
	}
	for i := 1; i < len(nas); i++ {
		if gap := nas[i].at.Sub(nas[i-1].at); gap < 150*time.Millisecond || gap > 300*time.Millisecond {
			t.Errorf("advertisement %d came %v after the previous, want about 200ms", i, gap)
		}
	}
	if len(garps) > 0 {
		t.Logf("first gratuitous ARP %v after SetOwned", garps[0].at.Sub(start))
	}

	// Unchanged IPs cause no packets; a new one causes its own burst only.
	ip4b := netip.MustParseAddr("198.51.100.201")
	a.SetOwned(map[netip.Addr][]string{ip4: {"eth0"}, ip6: {"eth0"}, ip4b: {"eth0"}})
	a.SetOwned(map[netip.Addr][]string{ip4: {"eth0"}, ip6: {"eth0"}, ip4b: {"eth0"}})
	if g := arpSniff.collect(700*time.Millisecond, isGARP); len(g) != 0 {
		t.Errorf("%d gratuitous ARP frames for an IP that stayed owned", len(g))
	}
	if n := ndpSniff.collect(0, isNA); len(n) != 0 {
		t.Errorf("%d advertisements for an IP that stayed owned", len(n))
	}
	c := a.Stats()[Link{"eth0", ARP}]
	if c.Gratuitous != 12 {
		t.Errorf("ARP gratuitous counter %d, want 12 (6 per IP)", c.Gratuitous)
	}
}
