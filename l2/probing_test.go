package l2

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// probeLAN is a bridge with the announcer's node "a", a host "c" that may already use an
// address, and an observer "d" that asks for addresses and watches what goes by.
type probeLAN struct {
	*testNet
	a, c, d    string
	macA, macC mac
}

func newProbeLAN(t *testing.T) *probeLAN {
	n := newTestNet(t)
	br := n.ns("br")
	l := &probeLAN{testNet: n, a: n.ns("a"), c: n.ns("c"), d: n.ns("d")}
	n.bridge(br, "br0")
	n.port(br, "br0", "pa", l.a, "eth0")
	n.port(br, "br0", "pc", l.c, "eth0")
	n.port(br, "br0", "pd", l.d, "eth0")
	n.addr(l.a, "eth0", "198.51.100.10/24", "2001:db8:100::10/64")
	n.addr(l.c, "eth0", "198.51.100.3/24", "2001:db8:100::3/64")
	n.addr(l.d, "eth0", "198.51.100.4/24", "2001:db8:100::4/64")
	l.macA, l.macC = n.mac(l.a, "eth0"), n.mac(l.c, "eth0")
	return l
}

// waitKind returns the first event of kind for ip after mark, or fails after d.
func (r *recorder) waitKind(t *testing.T, mark int, kind EventKind, ip netip.Addr, d time.Duration) Event {
	t.Helper()
	var found Event
	if !waitFor(d, func() bool {
		for _, e := range r.since(mark) {
			if e.Kind == kind && slices.Contains(e.IPs, ip) {
				found = e
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no %v event for %s within %v; events: %+v", kind, ip, d, r.since(mark))
	}
	return found
}

// TestProbeFindsAConflictAndRecovers: of two new IPv4 addresses, one already used by host c,
// the announcer probes both, announces the free one about 300 ms later, and for the used one
// reports a conflict naming c's MAC, neither answers nor announces it, and takes it once c
// lets it go. A free address handed over without probing (a failover) is answered at once.
func TestProbeFindsAConflictAndRecovers(t *testing.T) {
	l := newProbeLAN(t)
	used, free, moved := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("198.51.100.201"), netip.MustParseAddr("198.51.100.202")
	l.addr(l.c, "eth0", used.String()+"/24")
	watch := sniff(t, l.d, "eth0", etherTypeARP)
	a, rec := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	a.SetOwned(map[netip.Addr][]string{moved: {"eth0"}}) // opens the link: the probes' timing below is the probes' own
	waitUp(t, a, Link{"eth0", ARP})
	watch.drain()

	mark := rec.mark()
	start := time.Now()
	a.SetOwnedProbing(map[netip.Addr][]string{used: {"eth0"}, free: {"eth0"}, moved: {"eth0"}}, func(netip.Addr) bool { return true })
	if held := a.Held(); len(held) != 2 || held[used].Conflict || held[free].Conflict {
		t.Fatalf("right after SetOwnedProbing, held = %+v, want both new addresses probing", held)
	}
	rec.waitKind(t, mark, AddressClaimed, free, 3*time.Second)
	ev := rec.waitKind(t, mark, AddressConflict, used, 3*time.Second)
	if !equalMAC(ev.MAC, l.macC) || ev.Link != (Link{"eth0", ARP}) {
		t.Fatalf("conflict event %+v, want MAC %s on eth0/arp", ev, l.macC)
	}

	// On the wire: RFC 5227 probes (from 0.0.0.0, target MAC zero) for both, then the free
	// address's gratuitous ARPs, none for the used one.
	frames := watch.collect(1500*time.Millisecond, func(b []byte) bool { return mac(b[6:12]) == l.macA })
	probes := map[netip.Addr]int{}
	var firstGratuitous time.Time
	for _, f := range frames {
		op := binary.BigEndian.Uint16(f.b[20:22])
		sender, target := netip.AddrFrom4([4]byte(f.b[28:32])), netip.AddrFrom4([4]byte(f.b[38:42]))
		switch {
		case op == arpRequest && sender.IsUnspecified():
			if mac(f.b[32:38]) != (mac{}) || mac(f.b[0:6]) != broadcastMAC {
				t.Fatalf("probe for %s with target MAC %x to %x, want zero, broadcast", target, f.b[32:38], f.b[0:6])
			}
			probes[target]++
		case sender == target && sender == used:
			t.Fatalf("the announcer announced %s, which c uses", used)
		case sender == target && sender == free && firstGratuitous.IsZero():
			firstGratuitous = f.at
		}
	}
	// A round ends at the first answer: the used address gets one probe per round.
	if probes[used] < 1 || probes[free] != 3 || probes[moved] != 0 {
		t.Fatalf("probes sent: %v, want 3 for the free address, at least one for the used one and none for %s", probes, moved)
	}
	if firstGratuitous.IsZero() {
		t.Fatalf("no gratuitous ARP for %s", free)
	}
	t.Logf("first announcement of a probed address %v after SetOwnedProbing", firstGratuitous.Sub(start).Round(time.Millisecond))

	// Asked for, the free and the moved addresses are answered by a; the used one only by c.
	for ip, want := range map[netip.Addr]mac{free: l.macA, moved: l.macA, used: l.macC} {
		macs, summary := arping(t, l.d, "eth0", ip, 2)
		if len(macs) == 0 || slices.ContainsFunc(macs, func(m string) bool { return m != want.String() }) {
			t.Fatalf("arping %s answered by %v (%s), want only %s", ip, macs, summary, want)
		}
	}
	if h := a.Held()[used]; !h.Conflict || !equalMAC(h.MAC, l.macC) || h.Since.IsZero() {
		t.Fatalf("Held()[%s] = %+v, want a conflict with %s", used, h, l.macC)
	}

	// c lets the address go: the next round (at most 1 + 2 + 4 s after the conflict here)
	// finds nobody, and a announces it.
	mark = rec.mark()
	l.must("", "ip", "-n", l.c, "addr", "del", used.String()+"/24", "dev", "eth0")
	rec.waitKind(t, mark, ConflictResolved, used, 10*time.Second)
	if len(a.Held()) != 0 {
		t.Fatalf("held after recovery: %+v", a.Held())
	}
	if macs, summary := arping(t, l.d, "eth0", used, 2); len(macs) == 0 || macs[0] != l.macA.String() {
		t.Fatalf("arping %s after c let it go: %v (%s), want %s", used, macs, summary, l.macA)
	}
	if c := a.Stats()[Link{"eth0", ARP}]; c.Probes < 7 {
		t.Fatalf("counters %+v: want at least 7 probes (3 for the free address; for the used one, one per round and 3 in the last)", c)
	}
}

// TestProbeIgnoresTheClusterAndUnownedAddresses: an answer from a MAC the cluster owns
// (AnnouncerConfig.Ours: the old owner during a move) is no conflict; an address given up
// while held is forgotten.
func TestProbeIgnoresTheCluster(t *testing.T) {
	l := newProbeLAN(t)
	ip, gone := netip.MustParseAddr("198.51.100.210"), netip.MustParseAddr("198.51.100.211")
	l.addr(l.c, "eth0", ip.String()+"/24", gone.String()+"/24")
	cfg := DefaultAnnouncerConfig()
	macC := l.macC
	cfg.Ours = func(m net.HardwareAddr) bool { return equalMAC(m, macC) }
	a, rec := startAnnouncer(t, l.a, cfg)
	mark := rec.mark()
	a.SetOwnedProbing(map[netip.Addr][]string{ip: {"eth0"}, gone: {"eth0"}}, func(x netip.Addr) bool { return true })
	rec.waitKind(t, mark, AddressClaimed, ip, 3*time.Second)
	rec.waitKind(t, mark, AddressClaimed, gone, 3*time.Second)
	for _, e := range rec.since(mark) {
		if e.Kind == AddressConflict {
			t.Fatalf("conflict reported for an answer from the cluster's own MAC: %+v", e)
		}
	}
}

// TestProbeIPv6: duplicate address detection for IPv6 addresses. Host c holds one; the
// announcer's solicitation from :: draws c's advertisement, which is a conflict; the other
// address is claimed and answered.
func TestProbeIPv6(t *testing.T) {
	l := newProbeLAN(t)
	used, free := netip.MustParseAddr("2001:db8:100::200"), netip.MustParseAddr("2001:db8:100::201")
	l.addr(l.c, "eth0", used.String()+"/64")
	watch := sniff(t, l.d, "eth0", etherTypeIPv6)
	a, rec := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	mark := rec.mark()
	a.SetOwnedProbing(map[netip.Addr][]string{used: {"eth0"}, free: {"eth0"}}, func(netip.Addr) bool { return true })
	rec.waitKind(t, mark, AddressClaimed, free, 3*time.Second)
	ev := rec.waitKind(t, mark, AddressConflict, used, 3*time.Second)
	if !equalMAC(ev.MAC, l.macC) || ev.Link != (Link{"eth0", NDP}) {
		t.Fatalf("conflict event %+v, want MAC %s on eth0/ndp", ev, l.macC)
	}
	// The probes are DAD solicitations: from :: to the target's solicited-node group, and the
	// used address is never advertised by a.
	dad := 0
	for _, f := range watch.collect(time.Second, func(b []byte) bool { return mac(b[6:12]) == l.macA }) {
		if s, err := parseSolicitation(f.b); err == nil && s.src.IsUnspecified() && s.target == used {
			if s.dst != solicitedNode(used) || s.ethDst != multicastMAC(solicitedNode(used)) {
				t.Fatalf("DAD probe to %s (%s), want %s", s.dst, s.ethDst, solicitedNode(used))
			}
			dad++
		}
		if adv, ok := parseAdvertisementFrame(f.b); ok && adv.target == used {
			t.Fatalf("a advertised %s, which c uses", used)
		}
	}
	if dad == 0 {
		t.Fatal("no DAD probe for the used address seen")
	}
	// Solicited, the free address is answered by a.
	macD, fromD := l.mac(l.d, "eth0"), netip.MustParseAddr("2001:db8:100::4")
	watch.send(t, solicitationFrame(multicastMAC(solicitedNode(free)), macD, fromD, solicitedNode(free), free, &macD))
	if got := watch.collect(time.Second, func(b []byte) bool {
		adv, ok := parseAdvertisementFrame(b)
		return ok && adv.target == free && adv.tlla == l.macA && adv.solicited
	}); len(got) == 0 {
		t.Fatalf("no solicited advertisement of %s from a", free)
	}
	mark = rec.mark()
	l.must("", "ip", "-n", l.c, "addr", "del", used.String()+"/64", "dev", "eth0")
	rec.waitKind(t, mark, ConflictResolved, used, 10*time.Second)
}
