package l2

import (
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// arpLAN is a LAN for ARP tests: a bridge (namespace "br") with an announcer node "a" and a
// client "c" on it, and a second, direct link between a's eth1 and c's eth1. a's eth1 has no
// IPv4 address.
type arpLAN struct {
	*testNet
	br, a, c string
	macA0    mac // a's eth0
	macA1    mac // a's eth1
}

func newARPLAN(t *testing.T) *arpLAN {
	n := newTestNet(t)
	l := &arpLAN{testNet: n, br: n.ns("br"), a: n.ns("a"), c: n.ns("c")}
	n.bridge(l.br, "br0")
	n.port(l.br, "br0", "pa", l.a, "eth0")
	n.port(l.br, "br0", "pc", l.c, "eth0")
	n.veth(l.a, "eth1", l.c, "eth1")
	n.addr(l.a, "eth0", "198.51.100.10/24")
	n.addr(l.c, "eth0", "198.51.100.2/24")
	n.addr(l.c, "eth1", "198.51.100.3/32")
	l.macA0, l.macA1 = n.mac(l.a, "eth0"), n.mac(l.a, "eth1")
	return l
}

var arpingReply = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(([0-9.]+)\)`)

// arping asks for ip from the client's ifname with arping, count requests 200 ms apart, and
// returns the MAC of every reply it printed and its summary line.
func arping(t *testing.T, ns, ifname string, ip netip.Addr, count int, extra ...string) (macs []string, summary string) {
	t.Helper()
	argv := append([]string{"arping", "-c", strconv.Itoa(count), "-W", "0.2", "-w", "2", "-i", ifname}, extra...)
	out, _ := run(ns, append(argv, ip.String())...) // exit status 1 means no reply
	for _, m := range arpingReply.FindAllStringSubmatch(out, -1) {
		if m[2] != ip.String() {
			t.Fatalf("arping printed a reply for %s, asked for %s:\n%s", m[2], ip, out)
		}
		macs = append(macs, m[1])
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "packets transmitted") {
			summary = line
		}
	}
	if summary == "" {
		t.Fatalf("arping printed no summary:\n%s", out)
	}
	return macs, summary
}

func TestARPAnswersOwnedIPsOnTheirInterfacesOnly(t *testing.T) {
	l := newARPLAN(t)
	a, _ := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	owned, onEth1, unowned := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("198.51.100.201"), netip.MustParseAddr("198.51.100.202")
	a.SetOwned(map[netip.Addr][]string{owned: {"eth0"}, onEth1: {"eth1"}})
	waitUp(t, a, Link{"eth0", ARP}, Link{"eth1", ARP})

	for _, tc := range []struct {
		name    string
		ifname  string
		ip      netip.Addr
		want    []string
		options []string
	}{
		{name: "an owned IP is answered once per request, with the interface's MAC",
			ifname: "eth0", ip: owned, want: []string{l.macA0.String(), l.macA0.String()}},
		{name: "an unowned IP on the same LAN is not answered",
			ifname: "eth0", ip: unowned},
		{name: "an IP owned on eth0 is not answered on eth1 (no ARP flux)",
			ifname: "eth1", ip: owned, options: []string{"-S", "198.51.100.3"}},
		{name: "an IP owned on eth1, which has no IPv4 address, is answered there with eth1's MAC",
			ifname: "eth1", ip: onEth1, want: []string{l.macA1.String(), l.macA1.String()}, options: []string{"-S", "198.51.100.3"}},
		{name: "an IP owned on eth1 is not answered on eth0",
			ifname: "eth0", ip: onEth1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			macs, summary := arping(t, l.c, tc.ifname, tc.ip, 2, tc.options...)
			if !slices.Equal(macs, tc.want) {
				t.Errorf("replies from %v, want %v (%s)", macs, tc.want, summary)
			}
			if len(tc.want) > 0 && !strings.Contains(summary, "(0 extra)") {
				t.Errorf("arping saw extra replies: %s", summary)
			}
		})
	}

	t.Run("removal stops replies at once", func(t *testing.T) {
		a.SetOwned(map[netip.Addr][]string{onEth1: {"eth1"}})
		// No wait: SetOwned has returned, so the responder no longer answers for owned.
		if macs, summary := arping(t, l.c, "eth0", owned, 2); len(macs) != 0 {
			t.Errorf("replies from %v after removal (%s)", macs, summary)
		}
	})

	st := a.Stats()
	// eth0 saw two requests each for owned, unowned and onEth1; then it closed.
	if c := st[Link{"eth0", ARP}]; c.Replies != 2 || c.Requests != 6 || c.Gratuitous != 6 {
		t.Errorf("eth0 counters %+v, want 6 requests seen, 2 replies, 6 gratuitous frames", c)
	}
	if c := st[Link{"eth1", ARP}]; c.Replies != 2 {
		t.Errorf("eth1 counters %+v, want 2 replies", c)
	}
	t.Logf("counters: %+v", st)
}

func TestARPReplyIsWhatLinuxNeeds(t *testing.T) {
	// The client's kernel resolves the owned IP through the announcer: the neighbour entry
	// becomes REACHABLE with a's MAC.
	l := newARPLAN(t)
	a, _ := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	owned := netip.MustParseAddr("198.51.100.200")
	a.SetOwned(map[netip.Addr][]string{owned: {"eth0"}})
	waitUp(t, a, Link{"eth0", ARP})
	touch(t, l.c, owned)
	var got string
	if !waitFor(2*time.Second, func() bool {
		got = l.neigh(l.c, "eth0", owned)
		return strings.Contains(got, l.macA0.String()) && strings.Contains(got, "REACHABLE")
	}) {
		t.Errorf("client's neighbour entry %q, want %s REACHABLE", got, l.macA0)
	}
}

// touch sends a UDP datagram to ip from namespace ns, so that its kernel resolves ip.
func touch(t *testing.T, ns string, ip netip.Addr) {
	t.Helper()
	if err := inNetNS(ns, func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(ip, 9).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// neigh returns the neighbour entry of ip on ifname in ns, as `ip neigh` prints it.
func (n *testNet) neigh(ns, ifname string, ip netip.Addr) string {
	n.t.Helper()
	return strings.TrimSpace(n.must("", "ip", "-n", ns, "neigh", "show", ip.String(), "dev", ifname))
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
