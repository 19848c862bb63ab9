package l2

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func statusOf(a *Announcer, l Link) (LinkStatus, bool) {
	for _, s := range a.Status() {
		if s.Link == l {
			return s, true
		}
	}
	return LinkStatus{}, false
}

// TestLinkFailures: a missing, down, non-Ethernet or vanishing interface is reported and
// retried, and does not disturb the other interfaces.
func TestLinkFailures(t *testing.T) {
	l := newARPLAN(t)
	cfg := DefaultAnnouncerConfig()
	cfg.RetryInterval = 200 * time.Millisecond
	a, rec := startAnnouncer(t, l.a, cfg)
	good, onMissing, onDummy := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("198.51.100.210"), netip.MustParseAddr("198.51.100.211")
	l.must("", "ip", "-n", l.a, "tuntap", "add", "tun0", "mode", "tun")
	l.must("", "ip", "-n", l.a, "link", "set", "tun0", "up")
	a.SetOwned(map[netip.Addr][]string{
		good:      {"eth0"},
		onMissing: {"eth9"},
		onDummy:   {"tun0"},
	})

	if e := rec.wait(t, 0, Link{"eth9", ARP}, LinkFailed, 2*time.Second); !errors.Is(e.Err, ErrNoInterface) || !slices.Equal(e.IPs, []netip.Addr{onMissing}) {
		t.Errorf("eth9: LinkFailed %v for %v, want ErrNoInterface for %s", e.Err, e.IPs, onMissing)
	}
	if e := rec.wait(t, 0, Link{"tun0", ARP}, LinkFailed, 2*time.Second); !errors.Is(e.Err, ErrNotEthernet) {
		t.Errorf("tun0: LinkFailed %v, want ErrNotEthernet", e.Err)
	}
	waitUp(t, a, Link{"eth0", ARP})
	if macs, _ := arping(t, l.c, "eth0", good, 1); len(macs) != 1 {
		t.Errorf("eth0 answered %d times while eth9 is missing, want 1", len(macs))
	}
	if s, _ := statusOf(a, Link{"eth9", ARP}); s.Up || !errors.Is(s.Err, ErrNoInterface) {
		t.Errorf("eth9 status %+v, want down with ErrNoInterface", s)
	}

	t.Run("a failure is reported once, not at every retry", func(t *testing.T) {
		mark := rec.mark()
		time.Sleep(3 * cfg.RetryInterval)
		for _, e := range rec.since(mark) {
			t.Errorf("repeated event %+v", e)
		}
	})

	t.Run("an interface that appears is answered on within RetryInterval, and announced", func(t *testing.T) {
		capture := sniff(t, l.c, "eth1", etherTypeARP)
		l.must("", "ip", "-n", l.a, "link", "set", "eth1", "name", "eth9")
		start, mark := time.Now(), rec.mark()
		rec.wait(t, mark, Link{"eth9", ARP}, LinkUp, 2*time.Second)
		t.Logf("eth9 up %v after it appeared", time.Since(start))
		if g := capture.collect(100*time.Millisecond, func(f []byte) bool { return f[21] == arpRequest && f[28] == 198 && f[31] == 210 }); len(g) == 0 {
			t.Errorf("no gratuitous ARP for %s on the new interface", onMissing)
		}
	})

	t.Run("an interface that goes down is reported and answered on again when it comes back", func(t *testing.T) {
		mark := rec.mark()
		l.must("", "ip", "-n", l.a, "link", "set", "eth9", "down")
		e := rec.wait(t, mark, Link{"eth9", ARP}, LinkFailed, 2*time.Second)
		t.Logf("eth9 down: %v", e.Err)
		if macs, _ := arping(t, l.c, "eth0", good, 1); len(macs) != 1 {
			t.Errorf("eth0 answered %d times while eth9 is down, want 1", len(macs))
		}
		mark = rec.mark()
		l.must("", "ip", "-n", l.a, "link", "set", "eth9", "up")
		rec.wait(t, mark, Link{"eth9", ARP}, LinkUp, 2*time.Second)
		if macs, _ := arping(t, l.c, "eth1", onMissing, 1, "-S", "198.51.100.3"); len(macs) != 1 || macs[0] != l.macA1.String() {
			t.Errorf("after eth9 came back: replies from %v, want one from %s", macs, l.macA1)
		}
	})

	t.Run("an interface that is deleted is reported; the others keep answering", func(t *testing.T) {
		mark := rec.mark()
		l.must("", "ip", "-n", l.a, "link", "del", "eth9")
		e := rec.wait(t, mark, Link{"eth9", ARP}, LinkFailed, 2*time.Second)
		t.Logf("eth9 deleted: %v", e.Err)
		if macs, _ := arping(t, l.c, "eth0", good, 1); len(macs) != 1 {
			t.Errorf("eth0 answered %d times after eth9 was deleted, want 1", len(macs))
		}
	})

	t.Run("an interface no IP needs is closed and its failure forgotten", func(t *testing.T) {
		mark := rec.mark()
		a.SetOwned(map[netip.Addr][]string{good: {"eth0"}})
		for _, ifname := range []string{"eth9", "tun0"} {
			rec.wait(t, mark, Link{ifname, ARP}, LinkClosed, 2*time.Second)
		}
		if !waitFor(time.Second, func() bool { return len(a.Status()) == 1 }) {
			t.Errorf("status %+v, want eth0 only", a.Status())
		}
	})
}

// TestAnnouncerLifecycle: Run twice at once is refused; SetOwned before Run is applied when
// Run starts; Run closes everything when its context ends, and can run again.
func TestAnnouncerLifecycle(t *testing.T) {
	l := newARPLAN(t)
	owned := netip.MustParseAddr("198.51.100.200")
	cfg := DefaultAnnouncerConfig()
	cfg.OpenIn = func(open func() error) error { return inNetNS(l.a, open) }
	a := NewAnnouncer(cfg)
	a.SetOwned(map[netip.Addr][]string{owned: {"eth0"}, netip.MustParseAddr("::ffff:198.51.100.201"): {"eth0", "eth0", ""}, {}: {"eth0"}})
	if got, want := a.Owned(), map[netip.Addr][]string{owned: {"eth0"}, netip.MustParseAddr("198.51.100.201"): {"eth0"}}; !mapsEqual(got, want) {
		t.Errorf("Owned() = %v, want %v", got, want)
	}
	if st := a.Status(); len(st) != 0 {
		t.Errorf("status before Run: %+v, want none (nothing opens before Run)", st)
	}
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		waitUp(t, a, Link{"eth0", ARP})
		if err := a.Run(ctx); err == nil {
			t.Error("a second concurrent Run returned nil, want an error")
		}
		if macs, _ := arping(t, l.c, "eth0", owned, 1); len(macs) != 1 {
			t.Errorf("%d replies while running, want 1", len(macs))
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
		if macs, _ := arping(t, l.c, "eth0", owned, 1); len(macs) != 0 {
			t.Errorf("%d replies after Run returned, want 0", len(macs))
		}
	}
}

func mapsEqual(a, b map[netip.Addr][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
