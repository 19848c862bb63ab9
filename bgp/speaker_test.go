package bgp

// Tests of the Speaker that need neither root nor a router: GoBGP runs in the test process
// (one Speaker at a time) and connects to a closed port on the loopback.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

func TestRunRejectsInvalidConfig(t *testing.T) {
	err := New(Config{ListenPort: 70000, NextHopIPv6: netip.MustParseAddr("198.51.100.1")}).Run(context.Background())
	for _, want := range []string{`bgp: invalid configuration: router ID "" must be a non-zero IPv4 address`, "ASN must be set",
		"listen port 70000 is above 65535", "IPv6 next hop 198.51.100.1 must be an IPv6 unicast address"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run: %v, want an error containing %q", err, want)
		}
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) uint16 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return uint16(port)
}

// TestSpeakerWithoutRouter: before Run, sessions are listed Idle and invalid peers carry
// their error; Run applies what was set before it; the password reaches GoBGP's neighbor
// configuration; routes go into each peer's table even while its session is down, without
// counting as sent; a refused connection is the session's error and is signalled; Run
// returns when its context ends; Run cannot run twice.
func TestSpeakerWithoutRouter(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RouterID, cfg.ASN = netip.MustParseAddr("198.51.100.2"), 65000
	cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := New(cfg)
	port := closedPort(t)
	loopback := netip.MustParseAddr("127.0.0.1")
	must(t, s.SetPeers([]Peer{
		{Name: "refused", Address: loopback, Port: port, PeerASN: 65001},
		{Name: "with-password", Address: netip.MustParseAddr("127.0.0.2"), Port: port, PeerASN: 65001, Password: "s3cret"},
		{Name: "invalid", Address: netip.MustParseAddr("127.0.0.3")},
	}))
	err := s.SetPaths([]Path{
		{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Communities: []string{"65000:1"}},
		{Prefix: netip.MustParsePrefix("2001:db8:ff::10/128"), Peers: []string{"refused"}}, // no IPv6 next hop for an IPv4 session
		{Prefix: netip.MustParsePrefix("203.0.113.11/24")},
	})
	if err == nil || !strings.Contains(err.Error(), "path 203.0.113.11/24: prefix 203.0.113.11/24 has host bits set") {
		t.Errorf("SetPaths: %v, want the invalid path reported", err)
	}
	before := fmt.Sprint(s.Sessions())
	if !strings.Contains(before, "{refused 127.0.0.1 invalid IP Idle") || !strings.Contains(before, "invalid peer: peer ASN is not set") {
		t.Errorf("sessions before Run: %s", before)
	}

	r := runSpeaker(t, s)
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Run called more than once") {
		t.Errorf("a second Run: %v, want an error", err)
	}
	r.mu.Lock()
	srv := r.srv
	r.mu.Unlock()

	passwords := map[string]string{}
	must(t, srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		passwords[p.GetConf().GetNeighborAddress()] = p.GetConf().GetAuthPassword()
	}))
	if want := map[string]string{"127.0.0.1": "", "127.0.0.2": "s3cret"}; fmt.Sprint(passwords) != fmt.Sprint(want) {
		t.Errorf("GoBGP's neighbors and passwords: %v, want %v", passwords, want)
	}
	routes := map[string][]string{}
	for _, vrf := range []string{"refused", "with-password"} {
		for _, f := range []*api.Family{familyIPv4, familyIPv6} {
			must(t, srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_VRF, Name: vrf, Family: f}, func(d *api.Destination) {
				routes[vrf] = append(routes[vrf], strings.SplitN(d.Prefix, ":", 3)[2]) // without the VRF's RD
			}))
		}
	}
	if want := map[string][]string{"refused": {"203.0.113.10/32"}, "with-password": {"203.0.113.10/32"}}; fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("routes in GoBGP's per-peer tables: %v, want %v", routes, want)
	}

	drain(r.Changes())
	var st SessionState
	waitFor(t, 10*time.Second, func() (bool, string) {
		st = r.session(t, "refused")
		return st.LastError != "", fmt.Sprintf("refused: %+v", st)
	})
	if want := fmt.Sprintf("connecting to 127.0.0.1:%d: connect: connection refused", port); st.LastError != want || st.PrefixesSent != 0 {
		t.Errorf("refused: %+v, want error %q and no prefix sent", st, want)
	}
	select {
	case <-r.Changes():
	default:
		t.Errorf("the new error was not signalled")
	}

	start := time.Now()
	must(t, r.stop())
	if took := time.Since(start); took > time.Second {
		t.Errorf("Run took %s to return without established sessions", took)
	}
	for _, st := range r.Sessions() {
		if st.State != StateIdle {
			t.Errorf("after Run: %+v, want Idle", st)
		}
	}
}
