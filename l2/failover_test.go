package l2

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestFailover moves IPs from announcer A (namespace a) to B (namespace b) on the same
// bridge and checks that a client's existing neighbour entries, REACHABLE and STALE, move
// to B's MAC through B's gratuitous packets alone, and how fast.
func TestFailover(t *testing.T) {
	n := newTestNet(t)
	br, nsA, nsB, nsC := n.ns("br"), n.ns("a"), n.ns("b"), n.ns("c")
	n.bridge(br, "br0")
	for _, m := range []struct{ ns, port, v4, v6 string }{
		{nsA, "pa", "198.51.100.10/24", "2001:db8:100::10/64"},
		{nsB, "pb", "198.51.100.11/24", "2001:db8:100::11/64"},
		{nsC, "pc", "198.51.100.2/24", "2001:db8:100::2/64"},
	} {
		n.port(br, "br0", m.port, m.ns, "eth0")
		n.addr(m.ns, "eth0", m.v4, m.v6)
	}
	macA, macB := n.mac(nsA, "eth0"), n.mac(nsB, "eth0")
	a, _ := startAnnouncer(t, nsA, DefaultAnnouncerConfig())
	b, _ := startAnnouncer(t, nsB, DefaultAnnouncerConfig())

	reachable4, reachable6 := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:100::200")
	stale4, stale6 := netip.MustParseAddr("198.51.100.201"), netip.MustParseAddr("2001:db8:100::201")
	all := []netip.Addr{reachable4, reachable6, stale4, stale6}
	owned := map[netip.Addr][]string{}
	for _, ip := range all {
		owned[ip] = []string{"eth0"}
	}
	a.SetOwned(owned)
	waitUp(t, a, Link{"eth0", ARP}, Link{"eth0", NDP})

	// The client resolves every IP through A, then lets two entries go stale.
	for _, ip := range all {
		touch(t, nsC, ip)
	}
	for _, ip := range all {
		if !waitFor(2*time.Second, func() bool {
			e := n.neigh(nsC, "eth0", ip)
			return strings.Contains(e, macA.String()) && strings.Contains(e, "REACHABLE")
		}) {
			t.Fatalf("client's entry for %s: %q, want %s REACHABLE", ip, n.neigh(nsC, "eth0", ip), macA)
		}
	}
	for _, ip := range []netip.Addr{stale4, stale6} {
		n.must("", "ip", "-n", nsC, "neigh", "change", ip.String(), "dev", "eth0", "lladdr", macA.String(), "nud", "stale")
	}
	time.Sleep(1100 * time.Millisecond) // A's burst is over
	capture4, capture6 := sniff(t, nsC, "eth0", etherTypeARP), sniff(t, nsC, "eth0", etherTypeIPv6)

	// Failover: A stops, B takes over.
	a.SetOwned(nil)
	start := time.Now()
	b.SetOwned(owned)
	moved := map[netip.Addr]time.Duration{}
	for _, ip := range all {
		if !waitFor(2*time.Second, func() bool { return strings.Contains(n.neigh(nsC, "eth0", ip), macB.String()) }) {
			t.Errorf("client's entry for %s: %q, want B's MAC %s", ip, n.neigh(nsC, "eth0", ip), macB)
			continue
		}
		moved[ip] = time.Since(start)
	}

	// The client's kernel took the frames already; the sniffers' readers may still be queueing
	// them: collect for a moment.
	garps := capture4.collect(300*time.Millisecond, func(f []byte) bool { return mac(f[6:12]) == macB && len(f) >= 42 && f[28] == 198 })
	nas := capture6.collect(300*time.Millisecond, func(f []byte) bool {
		ad, ok := parseAdvertisementFrame(f)
		return ok && ad.ethSrc == macB && !ad.solicited && ad.override
	})
	if len(garps) == 0 || len(nas) == 0 {
		t.Errorf("client captured %d gratuitous ARP frames and %d unsolicited advertisements from B, want some of each", len(garps), len(nas))
	}
	if len(garps) > 0 {
		t.Logf("first gratuitous ARP from B reached the client %v after SetOwned", garps[0].at.Sub(start))
	}
	t.Logf("client entries moved to B (poll granularity ~10 ms): %v", moved)

	// B, not A, answers from now on.
	macs, summary := arping(t, nsC, "eth0", reachable4, 1)
	if len(macs) != 1 || macs[0] != macB.String() {
		t.Errorf("arping after failover: replies from %v (%s), want one from %s", macs, summary, macB)
	}
}
