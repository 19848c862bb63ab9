package l2

import (
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// The load tests and benchmarks run an announcer in namespace "a" with owned IPs on eth0,
// and a load generator in namespace "c" on the other end of a veth pair. Both share the
// machine's cores, so the figures are what an announcer sustains with a busy neighbour.

// loadNet is a veth pair between an announcer's namespace and a load generator's.
type loadNet struct {
	*testNet
	a, c       string
	macA, macC mac
}

func newLoadNet(tb testing.TB) *loadNet {
	n := newTestNet(tb)
	l := &loadNet{testNet: n, a: n.ns("a"), c: n.ns("c")}
	n.veth(l.a, "eth0", l.c, "eth0")
	n.addr(l.a, "eth0", "198.51.100.10/24", "2001:db8:100::10/64")
	n.addr(l.c, "eth0", "198.51.100.2/24", "2001:db8:100::2/64")
	l.macA, l.macC = n.mac(l.a, "eth0"), n.mac(l.c, "eth0")
	return l
}

// ownedIPs returns n4 IPv4 addresses from 198.51.100.16 (at most 240: the first 16 are the
// namespaces' own, which their kernels answer for too) and n6 IPv6 addresses from
// 2001:db8:100::1:0, all on eth0.
func ownedIPs(n4, n6 int) map[netip.Addr][]string {
	owned := map[netip.Addr][]string{}
	ip := netip.MustParseAddr("198.51.100.16")
	for range min(n4, 240) {
		owned[ip] = []string{"eth0"}
		ip = ip.Next()
	}
	ip = netip.MustParseAddr("2001:db8:100::1:0")
	for range n6 {
		owned[ip] = []string{"eth0"}
		ip = ip.Next()
	}
	return owned
}

// loadResult is the outcome of a load run.
type loadResult struct {
	sent, replies int
	elapsed       time.Duration // first request to last reply
}

func (r loadResult) rate() float64 { return float64(r.replies) / r.elapsed.Seconds() }

// arpLoad sends n ARP requests for targets (round robin) from c's eth0, with at most window
// unanswered at a time (window <= 0: no limit, as fast as the socket takes them), and counts
// the replies from mac from. It waits up to 300 ms after the last request for replies.
func arpLoad(tb testing.TB, ns string, src mac, from mac, targets []netip.Addr, n, window int) loadResult {
	tb.Helper()
	var conn *packet.Conn
	if err := inNetNS(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	setReadBuffer(tb, conn, 8<<20)

	var replies, lastNano atomic.Int64
	progress := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 128)
		for {
			m, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if m >= 42 && buf[21] == arpReply && mac(buf[6:12]) == from {
				replies.Add(1)
				lastNano.Store(time.Now().UnixNano())
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}
	}()

	frames := make([][]byte, len(targets))
	for i, t := range targets {
		frames[i] = appendARP(nil, &arpPacket{ethDst: broadcastMAC, ethSrc: src, op: arpRequest,
			senderMAC: src, senderIP: netip.MustParseAddr("198.51.100.2"), targetIP: t})
	}
	dst := &packet.Addr{HardwareAddr: net.HardwareAddr(broadcastMAC[:])}
	// waitProgress waits until cond holds, or until no reply came for 300 ms.
	waitProgress := func(cond func() bool) {
		for !cond() {
			select {
			case <-progress:
			case <-time.After(300 * time.Millisecond):
				return
			}
		}
	}
	start := time.Now()
	sent, lost := 0, 0
	for sent < n {
		if window > 0 {
			waitProgress(func() bool { return sent-int(replies.Load())-lost < window })
			if sent-int(replies.Load())-lost >= window {
				lost = sent - int(replies.Load()) // give up on what is outstanding
			}
		}
		if _, err := conn.WriteTo(frames[sent%len(frames)], dst); err != nil {
			tb.Fatalf("sending request %d: %v", sent, err)
		}
		sent++
	}
	waitProgress(func() bool { return int(replies.Load()) >= sent })
	return loadResult{sent: sent, replies: int(replies.Load()), elapsed: time.Unix(0, lastNano.Load()).Sub(start)}
}

// setReadBuffer sets a packet socket's receive buffer, beyond net.core.rmem_max.
func setReadBuffer(tb testing.TB, conn *packet.Conn, n int) {
	tb.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		tb.Fatal(err)
	}
	if serr != nil {
		tb.Fatal(serr)
	}
}

// heapInUse returns the live heap after a garbage collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rss returns the process's resident set size, from /proc/self/status.
func rss() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestARPUnderLoad answers a bounded burst without losing a request: 5,000 requests for
// 240 owned IPs, at most 64 outstanding.
func TestARPUnderLoad(t *testing.T) {
	l := newLoadNet(t)
	a, _ := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	owned := ownedIPs(240, 0)
	a.SetOwned(owned)
	waitUp(t, a, Link{"eth0", ARP})
	time.Sleep(1100 * time.Millisecond) // the gratuitous bursts are over
	var targets []netip.Addr
	for ip := range owned {
		targets = append(targets, ip)
	}
	r := arpLoad(t, l.c, l.macC, l.macA, targets, 5000, 64)
	if r.replies != r.sent {
		t.Errorf("%d replies to %d requests", r.replies, r.sent)
	}
	c := a.Stats()[Link{"eth0", ARP}]
	if c.Requests != 5000 || c.Replies != 5000 {
		t.Errorf("counters %+v, want 5000 requests and replies", c)
	}
	t.Logf("%d replies in %v: %.0f/s", r.replies, r.elapsed, r.rate())
}

// BenchmarkARPReplies measures the ARP replies per second one announcer sustains: 20,000
// requests for 240 owned IPs per iteration, with a window of outstanding requests (closed
// loop: the rate the responder keeps up with) and without (open loop: the load generator
// sends as fast as it can; replies/s then includes the requests the responder's socket
// dropped).
func BenchmarkARPReplies(b *testing.B) {
	for _, tc := range []struct {
		name          string
		window        int
		receiveBuffer int
	}{
		{"window=16", 16, 1 << 20},
		{"window=256", 256, 1 << 20},
		{"window=none/rcvbuf=1MiB", 0, 1 << 20},
		{"window=none/rcvbuf=kernel-default", 0, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newLoadNet(b)
			cfg := DefaultAnnouncerConfig()
			cfg.ReceiveBuffer = tc.receiveBuffer
			a, _ := startAnnouncer(b, l.a, cfg)
			owned := ownedIPs(240, 0)
			a.SetOwned(owned)
			waitUp(b, a, Link{"eth0", ARP})
			time.Sleep(1100 * time.Millisecond)
			var targets []netip.Addr
			for ip := range owned {
				targets = append(targets, ip)
			}
			var total loadResult
			for b.Loop() {
				r := arpLoad(b, l.c, l.macC, l.macA, targets, 20000, tc.window)
				total.sent += r.sent
				total.replies += r.replies
				total.elapsed += r.elapsed
			}
			b.ReportMetric(total.rate(), "replies/s")
			b.ReportMetric(100*float64(total.sent-total.replies)/float64(total.sent), "%unanswered")
			b.Logf("counters: %+v", a.Stats()[Link{"eth0", ARP}])
		})
	}
}

// TestAnnouncerMemory logs what 1,000 owned IPs cost: the Go heap of the announcer (owned
// table, responders, buffers), the process's RSS growth, goroutines and the solicited-node
// groups joined. The documentation range 198.51.100.0/24 holds only 240 free IPv4 addresses
// here, so the 1,000 are 240 IPv4 and 760 IPv6, or all IPv6.
func TestAnnouncerMemory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n4, n6 int
	}{{"240 IPv4 + 760 IPv6", 240, 760}, {"1000 IPv6", 0, 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLoadNet(t)
			heap0, rss0, g0 := heapInUse(), rss(), runtime.NumGoroutine()
			a, _ := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
			owned := ownedIPs(tc.n4, tc.n6)
			a.SetOwned(owned)
			links := []Link{{"eth0", NDP}}
			if tc.n4 > 0 {
				links = append(links, Link{"eth0", ARP})
			}
			waitUp(t, a, links...)
			time.Sleep(1100 * time.Millisecond) // bursts over
			heap1, rss1, g1 := heapInUse(), rss(), runtime.NumGoroutine()
			groups := strings.Count(l.must("", "ip", "-n", l.a, "-6", "maddr", "show", "dev", "eth0"), "ff02::1:ff")
			st := a.Status()
			var errs []error
			for _, s := range st {
				if s.Err != nil {
					errs = append(errs, s.Err)
				}
			}
			if len(errs) > 0 {
				t.Errorf("link errors: %v", errs)
			}
			t.Logf("%d owned IPs: heap +%d KiB, RSS +%d KiB, goroutines +%d, solicited-node groups joined %d, links %d",
				len(owned), (int64(heap1)-int64(heap0))>>10, (int64(rss1)-int64(rss0))>>10, g1-g0, groups, len(st))
		})
	}
}

// TestTakeoverLatency logs how long after SetOwned the client sees the first gratuitous ARP
// of a newly owned IP: on a link whose responder is already open (another IP needs it), and
// on a cold one (the responder opens first). 100 trials each.
func TestTakeoverLatency(t *testing.T) {
	l := newLoadNet(t)
	a, _ := startAnnouncer(t, l.a, DefaultAnnouncerConfig())
	capture := sniff(t, l.c, "eth0", etherTypeARP)
	keep := netip.MustParseAddr("198.51.100.16")
	for _, tc := range []struct {
		name string
		base map[netip.Addr][]string // owned besides the IP taken over
	}{
		{"open link", map[netip.Addr][]string{keep: {"eth0"}}},
		{"cold link", map[netip.Addr][]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lat []time.Duration
			for i := range 100 {
				ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + i)})
				a.SetOwned(tc.base)
				if len(tc.base) > 0 {
					waitUp(t, a, Link{"eth0", ARP})
				} else if !waitFor(time.Second, func() bool { return len(a.Status()) == 0 }) {
					t.Fatal("link not closed")
				}
				capture.drain()
				owned := maps.Clone(tc.base)
				owned[ip] = []string{"eth0"}
				start := time.Now()
				a.SetOwned(owned)
				var first time.Time
				if !waitFor(time.Second, func() bool {
					for _, c := range capture.collect(0, func(f []byte) bool { return len(f) >= 42 && netip.AddrFrom4([4]byte(f[38:42])) == ip }) {
						first = c.at
						return true
					}
					return false
				}) {
					t.Fatalf("no gratuitous ARP for %s", ip)
				}
				lat = append(lat, first.Sub(start))
			}
			slices.Sort(lat)
			t.Logf("SetOwned to first gratuitous ARP at the client, %s: p50 %v, p99 %v, max %v", tc.name, lat[49], lat[98], lat[99])
		})
	}
}
