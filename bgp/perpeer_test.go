package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// birdPeers is a BIRD configuration with one eBGP session per link, protocol "link<i>".
func birdPeers(links []linkInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, `router id %s;
protocol device { scan time 1; }
template bgp node {
  passive on; hold time 9; error wait time 1, 5; debug { states, routes };
  ipv4 { import all; export none; };
  ipv6 { import all; export none; };
}
`, links[0].Router4)
	for i, li := range links {
		fmt.Fprintf(&b, "protocol bgp link%d from node { local %s as %d; neighbor %s as %d; }\n", i+1, li.Router4, routerASN, li.Node4, nodeASN)
	}
	return b.String()
}

// TestPerPeerRoutes: one prefix goes to two peers with different attributes; nil Peers means
// every peer (also one added later), an empty list none; paths for the same prefix and peer
// merge; moving a path between peers withdraws it from one and announces it to the other;
// a removed peer loses its session and routes, a changed peer gets a new session with its
// routes; peers and paths set before Run are applied when it starts.
func TestPerPeerRoutes(t *testing.T) {
	if info := inChild(t); info != nil {
		perPeerChild(t, info)
		return
	}
	l := newLab(t, 3)
	l.startBIRD(birdPeers(l.info.Links))
	l.runChild()
}

func perPeerChild(t *testing.T, info *labInfo) {
	links := info.Links
	cfg := testConfig(t, links[0])
	peer := func(i int) Peer {
		return Peer{Name: fmt.Sprintf("link%d", i), Address: links[i-1].Router4, PeerASN: routerASN}
	}
	host := func(s string) netip.Prefix { return netip.MustParsePrefix("203.0.113." + s + "/32") }
	paths := []Path{
		{Prefix: host("10"), Peers: []string{"link1"}, Communities: []string{"65000:1"}},
		{Prefix: host("10"), Peers: []string{"link2"}, Communities: []string{"65000:2"}, LargeCommunities: []string{"65000:2:2"}},
		{Prefix: host("11")}, // every peer
		{Prefix: host("11"), Peers: []string{"link1"}, Communities: []string{"65000:5"}}, // merged on link1
		{Prefix: host("12"), Peers: []string{}},                                          // no peer
		{Prefix: host("13"), Peers: []string{"not-configured"}},                          // no such peer (yet)
	}

	// Set before Run: applied when it starts.
	s := New(cfg)
	must(t, s.SetPeers([]Peer{peer(1), peer(2)}))
	must(t, s.SetPaths(paths))
	if st := s.Sessions(); len(st) != 2 || st[0].State != StateIdle || st[0].LastError != "" {
		t.Errorf("sessions before Run: %+v, want link1 and link2, Idle, without error", st)
	}
	r := runSpeaker(t, s)
	r.waitState(t, "link1", StateEstablished, 15*time.Second)
	r.waitState(t, "link2", StateEstablished, 15*time.Second)

	expect := func(what string, want map[string]map[string]birdRoute) {
		t.Helper()
		for proto, routes := range want {
			waitFor(t, 5*time.Second, func() (bool, string) {
				ok, why := matchBIRD(routes, birdRoutesOf(t, info.BIRD, proto))
				return ok, what + ": " + proto + ": " + why
			})
		}
	}
	community := func(c string) map[string]string { return map[string]string{"BGP.community": c} }
	expect("initial", map[string]map[string]birdRoute{
		"link1": {"203.0.113.10/32": {Attrs: community("(65000,1)")}, "203.0.113.11/32": {Attrs: community("(65000,5)")}},
		"link2": {"203.0.113.10/32": {Attrs: map[string]string{"BGP.community": "(65000,2)", "BGP.large_community": "(65000, 2, 2)"}},
			"203.0.113.11/32": {Attrs: community("")}},
	})
	if st := r.session(t, "link1"); st.PrefixesSent != 2 {
		t.Errorf("link1 sent %d prefixes, want 2", st.PrefixesSent)
	}

	// Move the link1-only path to link2: withdrawn from link1, merged into link2's.
	paths[0].Peers = []string{"link2"}
	must(t, r.SetPaths(paths))
	expect("moved", map[string]map[string]birdRoute{
		"link1": {"203.0.113.11/32": {Attrs: community("(65000,5)")}},
		"link2": {"203.0.113.10/32": {Attrs: community("(65000,1) (65000,2)")}, "203.0.113.11/32": {}},
	})

	// A third peer gets the every-peer path; removing link2 closes its session and takes
	// its routes away; changing link1 (hold time) replaces its session.
	changed := peer(1)
	changed.HoldTime = 30 * time.Second
	before := r.session(t, "link1")
	must(t, r.SetPeers([]Peer{changed, peer(3)}))
	r.waitState(t, "link3", StateEstablished, 15*time.Second)
	expect("link3 added, link2 removed", map[string]map[string]birdRoute{
		"link1": {"203.0.113.11/32": {Attrs: community("(65000,5)")}},
		"link2": {},
		"link3": {"203.0.113.11/32": {Attrs: community("")}},
	})
	var names []string
	for _, st := range r.Sessions() {
		names = append(names, st.Peer)
	}
	if strings.Join(names, ",") != "link1,link3" {
		t.Errorf("sessions after SetPeers: %v, want link1,link3", names)
	}
	out := must1(birdc(info.BIRD, "show protocols all link2"))
	if !strings.Contains(out, "Peer de-configured") {
		t.Errorf("BIRD's link2 does not report Peer de-configured:\n%s", out)
	}
	after := r.waitState(t, "link1", StateEstablished, 15*time.Second)
	log := string(must1(os.ReadFile(info.Dir + "/bird/bird.log")))
	if n := strings.Count(log, "link1: State changed to up"); n != 2 {
		t.Errorf("BIRD's link1 came up %d times, want 2 (the change of hold time replaces the session):\n%s", n, tail(log, 40))
	}
	t.Logf("link1 established %s before the change, %s after", before.EstablishedSince.Format(time.TimeOnly), after.EstablishedSince.Format(time.TimeOnly))
}
