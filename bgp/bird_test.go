package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

const (
	nodeASN   = 65000
	routerASN = 65001
)

// testConfig is a speaker configuration for link li of the lab.
func testConfig(t *testing.T, li linkInfo) Config {
	cfg := DefaultConfig()
	cfg.RouterID = li.Node4
	cfg.ASN = nodeASN
	cfg.NextHopIPv4 = li.Node4
	cfg.NextHopIPv6 = li.Node6
	cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// birdEBGP is a BIRD configuration with an eBGP session over IPv4 and one over IPv6 to the
// node on link li, each carrying both families.
func birdEBGP(li linkInfo, extra string) string {
	return fmt.Sprintf(`router id %s;
protocol device { scan time 1; }
template bgp node {
  passive on; hold time 9; error wait time 1, 5; debug { states, routes };
  ipv4 { import all; export where proto = "offered4"; };
  ipv6 { import all; export where proto = "offered6"; };
}
protocol bgp node4 from node { local %s as %d; neighbor %s as %d; }
protocol bgp node6 from node { local %s as %d; neighbor %s as %d; }
%s`, li.Router4, li.Router4, routerASN, li.Node4, nodeASN, li.Router6, routerASN, li.Node6, nodeASN, extra)
}

// The iBGP sessions of the tests run between second addresses on link 1: GoBGP keeps one
// session per router address and routers one per node address, and the eBGP sessions use
// the first ones. The node's side is set with Peer.SourceAddress.
var (
	nodeIBGP   = netip.MustParseAddr("198.51.100.20")
	routerIBGP = netip.MustParseAddr("198.51.100.19")
)

// birdIBGP is an iBGP session (AS 65001 on both ends) between nodeIBGP and routerIBGP.
func birdIBGP() string {
	return fmt.Sprintf(`protocol bgp inode4 from node { local %s as %d; neighbor %s as %d; direct; }
`, routerIBGP, routerASN, nodeIBGP, routerASN)
}

// TestBIRD: sessions over IPv4 and IPv6 come up with BIRD; paths appear with their
// communities and next hops (also an IPv6 prefix over the IPv4 session and the reverse);
// an unchanged SetPaths sends nothing and a changed attribute sends one UPDATE; a
// withdrawal removes the route; Run's shutdown withdraws everything before it returns.
func TestBIRD(t *testing.T) {
	if info := inChild(t); info != nil {
		birdChild(t, info)
		return
	}
	l := newLab(t, 1)
	l.addAddress(false, 1, nodeIBGP)
	l.addAddress(true, 1, routerIBGP)
	// BIRD also offers the node a route on each session, which the node must not learn.
	l.startBIRD(birdEBGP(l.info.Links[0], birdIBGP()+`
protocol static offered4 { ipv4; route 198.51.100.128/26 blackhole; }
protocol static offered6 { ipv6; route 2001:db8:eeee::/48 blackhole; }
`))
	l.runChild()
}

func birdChild(t *testing.T, info *labInfo) {
	li := info.Links[0]
	s := startSpeaker(t, testConfig(t, li))
	must(t, s.SetPeers([]Peer{
		{Name: "bird-v4", Address: li.Router4, PeerASN: routerASN},
		{Name: "bird-v6", Address: li.Router6, PeerASN: routerASN, GracefulRestart: true, RestartTime: 77 * time.Second},
		{Name: "bird-ibgp", Address: routerIBGP, SourceAddress: nodeIBGP, PeerASN: routerASN, LocalASN: routerASN},
	}))
	for _, name := range []string{"bird-v4", "bird-v6", "bird-ibgp"} {
		st := s.waitState(t, name, StateEstablished, 15*time.Second)
		t.Logf("session %s: %+v", name, st)
		if st.LastError != "" || st.EstablishedSince.IsZero() || !st.LocalAddress.IsValid() {
			t.Errorf("established session %s: want no error, a start time and a local address: %+v", name, st)
		}
	}

	lp := uint32(300)
	paths := []Path{
		{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Peers: []string{"bird-v4"},
			Communities: []string{"65000:100", "65000:200"}, LargeCommunities: []string{"large:4200000000:1:2"}, LocalPref: &lp},
		{Prefix: netip.MustParsePrefix("2001:db8:ff::10/128"), Peers: []string{"bird-v6"}, Communities: []string{"65000:600"}},
		// cross-family: next hops from Config.NextHopIPv6 / NextHopIPv4
		{Prefix: netip.MustParsePrefix("2001:db8:ff::20/128"), Peers: []string{"bird-v4"}},
		{Prefix: netip.MustParsePrefix("203.0.113.20/32"), Peers: []string{"bird-v6"}},
		// to every peer
		{Prefix: netip.MustParsePrefix("203.0.113.0/28")},
		// iBGP carries LOCAL_PREF
		{Prefix: netip.MustParsePrefix("203.0.113.30/32"), Peers: []string{"bird-ibgp"}, LocalPref: &lp, LargeCommunities: []string{"65000:7:8"}},
	}
	must(t, s.SetPaths(paths))

	want := map[string]map[string]birdRoute{
		"node4": {
			"203.0.113.10/32": {Via: li.Node4.String(), Attrs: map[string]string{
				"BGP.community": "(65000,100) (65000,200)", "BGP.large_community": "(4200000000, 1, 2)",
				"BGP.local_pref": "100", // eBGP: GoBGP does not send our 300; BIRD sets its default
				"BGP.as_path":    "65000"}},
			"2001:db8:ff::20/128": {Via: li.Node6.String()},
			"203.0.113.0/28":      {Via: li.Node4.String()},
		},
		"node6": {
			"2001:db8:ff::10/128": {Via: li.Node6.String(), Attrs: map[string]string{"BGP.community": "(65000,600)"}},
			"203.0.113.20/32":     {Via: li.Node4.String()},
			"203.0.113.0/28":      {Via: li.Node4.String()},
		},
		"inode4": {
			"203.0.113.30/32": {Via: nodeIBGP.String(), Attrs: map[string]string{
				"BGP.local_pref": "300", "BGP.large_community": "(65000, 7, 8)", "BGP.as_path": ""}},
			"203.0.113.0/28": {Via: nodeIBGP.String(), Attrs: map[string]string{"BGP.local_pref": "100"}},
		},
	}
	for proto, routes := range want {
		waitFor(t, 5*time.Second, func() (bool, string) {
			got := birdRoutesOf(t, info.BIRD, proto)
			return matchBIRD(routes, got)
		})
	}
	t.Logf("BIRD's routes:\n%s", must1(birdc(info.BIRD, "show route all")))
	t.Logf("BIRD's node6:\n%s", must1(birdc(info.BIRD, "show protocols all node6")))
	notLearned(t, s.Speaker)
	waitFor(t, 2*time.Second, func() (bool, string) {
		a, b, c := s.session(t, "bird-v4"), s.session(t, "bird-v6"), s.session(t, "bird-ibgp")
		return a.PrefixesSent == 3 && b.PrefixesSent == 3 && c.PrefixesSent == 2,
			fmt.Sprintf("prefixes sent: bird-v4 %d, bird-v6 %d, bird-ibgp %d, want 3, 3 and 2", a.PrefixesSent, b.PrefixesSent, c.PrefixesSent)
	})

	// The same paths again: nothing is sent.
	before := updatesSent(t, s.Speaker)
	must(t, s.SetPaths(paths))
	time.Sleep(300 * time.Millisecond)
	if after := updatesSent(t, s.Speaker); after != before {
		t.Errorf("SetPaths with unchanged paths sent %d UPDATEs, want 0", after-before)
	}

	// One attribute changes: one UPDATE to the one peer concerned.
	paths[1].Communities = []string{"65000:601"}
	must(t, s.SetPaths(paths))
	waitFor(t, 5*time.Second, func() (bool, string) {
		got := birdRoutesOf(t, info.BIRD, "node6")["2001:db8:ff::10/128"].Attrs["BGP.community"]
		return got == "(65000,601)", "community on 2001:db8:ff::10/128 is " + got
	})
	if after := updatesSent(t, s.Speaker); after != before+1 {
		t.Errorf("changing one path's community sent %d UPDATEs, want 1", after-before)
	}

	// Withdrawal.
	must(t, s.SetPaths(paths[1:]))
	waitFor(t, 5*time.Second, func() (bool, string) {
		_, ok := birdRoutesOf(t, info.BIRD, "node4")["203.0.113.10/32"]
		return !ok, "203.0.113.10/32 is still at the router"
	})

	// Shutdown: by the time Run returns, the router has no route left, and its log shows
	// each route withdrawn before the session was closed.
	start := time.Now()
	must(t, s.stop())
	t.Logf("shutdown took %s", time.Since(start))
	for _, proto := range []string{"node4", "node6", "inode4"} {
		if got := birdRoutesOf(t, info.BIRD, proto); len(got) != 0 {
			t.Errorf("routes from %s still at the router right after Run returned: %v", proto, got)
		}
	}
	log := string(must1(os.ReadFile(info.Dir + "/bird/bird.log")))
	withdrawnBeforeClose(t, log, "node4", "203.0.113.0/28", "2001:db8:ff::20/128")
	withdrawnBeforeClose(t, log, "node6", "203.0.113.0/28", "203.0.113.20/32", "2001:db8:ff::10/128")
	withdrawnBeforeClose(t, log, "inode4", "203.0.113.0/28", "203.0.113.30/32")
}

// withdrawnBeforeClose checks in BIRD's log (with "debug { states, routes }") that each
// prefix was removed from protocol proto before it received our Administrative Shutdown.
func withdrawnBeforeClose(t *testing.T, log, proto string, prefixes ...string) {
	t.Helper()
	lines := strings.Split(log, "\n")
	closed := slices.IndexFunc(lines, func(l string) bool {
		return strings.Contains(l, " "+proto+": Received: Administrative shutdown: \"ironlb speaker shutting down\"")
	})
	if closed < 0 {
		t.Errorf("BIRD's log has no Administrative Shutdown received on %s:\n%s", proto, tail(log, 40))
		return
	}
	for _, prefix := range prefixes {
		removed := slices.IndexFunc(lines, func(l string) bool {
			return strings.Contains(l, " "+proto+".ipv") && strings.Contains(l, "> removed") && strings.Contains(l, " "+prefix+" ")
		})
		if removed < 0 || removed > closed {
			t.Errorf("BIRD did not see %s withdrawn on %s before the session closed:\n%s", prefix, proto, tail(log, 40))
		}
	}
}

// notLearned checks that the routes BIRD offered are counted on every session but learned
// nowhere: GoBGP's tables hold only the speaker's own routes.
func notLearned(t *testing.T, s *Speaker) {
	t.Helper()
	waitFor(t, 5*time.Second, func() (bool, string) {
		var counts []string
		ok := true
		for _, st := range s.Sessions() {
			counts = append(counts, fmt.Sprintf("%s %d", st.Peer, st.PrefixesReceived))
			ok = ok && st.PrefixesReceived == 2
		}
		return ok, fmt.Sprintf("prefixes received: %v, want 2 on each session", counts)
	})
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	for _, f := range []*api.Family{familyIPv4, familyIPv6,
		{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_MPLS_VPN}, {Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_MPLS_VPN}} {
		must(t, srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f}, func(d *api.Destination) {
			for _, p := range d.Paths {
				if p.NeighborIp != "<nil>" {
					t.Errorf("GoBGP learned %s from %s", d.Prefix, p.NeighborIp)
				}
			}
		}))
	}
}

// matchBIRD checks that got holds want's routes with at least want's attributes.
func matchBIRD(want, got map[string]birdRoute) (bool, string) {
	for prefix, w := range want {
		g, ok := got[prefix]
		if !ok {
			return false, fmt.Sprintf("%s missing; router has %v", prefix, got)
		}
		if w.Via != "" && g.Via != w.Via {
			return false, fmt.Sprintf("%s via %s, want via %s", prefix, g.Via, w.Via)
		}
		for k, v := range w.Attrs {
			if g.Attrs[k] != v {
				return false, fmt.Sprintf("%s %s = %q, want %q", prefix, k, g.Attrs[k], v)
			}
		}
	}
	if len(got) != len(want) {
		return false, fmt.Sprintf("router has %d routes, want %d: %v", len(got), len(want), got)
	}
	return true, ""
}

// updatesSent sums the UPDATE messages GoBGP has sent on all sessions.
func updatesSent(t *testing.T, s *Speaker) uint64 {
	t.Helper()
	var n uint64
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	must(t, srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		n += p.GetState().GetMessages().GetSent().GetUpdate()
	}))
	return n
}

func must1[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
