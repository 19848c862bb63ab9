package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// frrConf peers FRR (AS 65001) with the node on link li: eBGP over IPv4 and over IPv6, each
// carrying both families, and iBGP between routerIBGP and nodeIBGP (the node uses AS 65001
// on that session through Peer.LocalASN).
func frrConf(li linkInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, `frr defaults traditional
hostname ilbt-frr
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
`, routerASN, li.Router4)
	neighbors := []struct {
		addr netip.Addr
		asn  int
	}{{li.Node4, nodeASN}, {li.Node6, nodeASN}, {nodeIBGP, routerASN}}
	for _, n := range neighbors {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s passive\n neighbor %s timers 3 9\n", n.addr, n.asn, n.addr, n.addr)
	}
	for _, afi := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n", afi)
		for _, n := range neighbors {
			fmt.Fprintf(&b, "  neighbor %s activate\n", n.addr)
		}
		b.WriteString(" exit-address-family\n")
	}
	b.WriteString("!\n")
	return b.String()
}

// TestFRR: sessions over IPv4 and IPv6 and an iBGP session come up with FRR; paths appear in
// `show bgp ... json` with their next hops, communities, large communities and (iBGP) local
// preference; a withdrawal removes them; Run's shutdown leaves FRR without routes.
func TestFRR(t *testing.T) {
	if info := inChild(t); info != nil {
		frrChild(t, info)
		return
	}
	l := newLab(t, 1)
	l.addAddress(false, 1, nodeIBGP)
	l.addAddress(true, 1, routerIBGP)
	l.startFRR(frrConf(l.info.Links[0]))
	l.runChild()
}

func frrChild(t *testing.T, info *labInfo) {
	li := info.Links[0]
	s := startSpeaker(t, testConfig(t, li))
	must(t, s.SetPeers([]Peer{
		{Name: "frr-v4", Address: li.Router4, PeerASN: routerASN},
		{Name: "frr-v6", Address: li.Router6, PeerASN: routerASN},
		{Name: "frr-ibgp", Address: routerIBGP, SourceAddress: nodeIBGP, PeerASN: routerASN, LocalASN: routerASN},
	}))
	for _, name := range []string{"frr-v4", "frr-v6", "frr-ibgp"} {
		st := s.waitState(t, name, StateEstablished, 15*time.Second)
		t.Logf("session %s: %+v", name, st)
	}

	lp := uint32(250)
	paths := []Path{
		{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Peers: []string{"frr-v4"},
			Communities: []string{"65000:100", "65000:200"}, LargeCommunities: []string{"4200000000:1:2"}},
		{Prefix: netip.MustParsePrefix("2001:db8:ff::10/128"), Peers: []string{"frr-v6"}, Communities: []string{"65000:600"}},
		{Prefix: netip.MustParsePrefix("2001:db8:ff::20/128"), Peers: []string{"frr-v4"}}, // next hop: Config.NextHopIPv6
		{Prefix: netip.MustParsePrefix("203.0.113.30/32"), Peers: []string{"frr-ibgp"}, LocalPref: &lp, Communities: []string{"65000:300"}},
	}
	must(t, s.SetPaths(paths))

	want := map[string]map[string][]string{
		"ipv4": {"203.0.113.10/32": {li.Node4.String()}, "203.0.113.30/32": {nodeIBGP.String()}},
		"ipv6": {"2001:db8:ff::10/128": {li.Node6.String()}, "2001:db8:ff::20/128": {li.Node6.String()}},
	}
	for afi, routes := range want {
		waitFor(t, 5*time.Second, func() (bool, string) {
			got := frrRoutes(t, info.FRR, afi)
			return matchFRR(routes, got)
		})
	}
	t.Logf("FRR's IPv4 table:\n%s", must1(vtysh(info.FRR, "show bgp ipv4 unicast")))
	t.Logf("FRR's IPv6 table:\n%s", must1(vtysh(info.FRR, "show bgp ipv6 unicast")))

	p := only(t, frrPrefix(t, info.FRR, "ipv4", "203.0.113.10/32"))
	if p.Community.String != "65000:100 65000:200" || p.LargeCommunity.String != "4200000000:1:2" || p.ASPath.String != "65000" {
		t.Errorf("203.0.113.10/32 at FRR: communities %q, large %q, AS path %q; want 65000:100 65000:200, 4200000000:1:2, 65000",
			p.Community.String, p.LargeCommunity.String, p.ASPath.String)
	}
	p = only(t, frrPrefix(t, info.FRR, "ipv4", "203.0.113.30/32"))
	if p.LocalPref == nil || *p.LocalPref != 250 || p.Community.String != "65000:300" || p.ASPath.String != "Local" {
		t.Errorf("203.0.113.30/32 at FRR (iBGP): local pref %v, communities %q, AS path %q; want 250, 65000:300, Local (empty)",
			fmtPtr(p.LocalPref), p.Community.String, p.ASPath.String)
	}
	p = only(t, frrPrefix(t, info.FRR, "ipv4", "203.0.113.10/32"))
	if p.LocalPref != nil {
		t.Errorf("203.0.113.10/32 at FRR (eBGP) has local pref %d, want none", *p.LocalPref)
	}
	p = only(t, frrPrefix(t, info.FRR, "ipv6", "2001:db8:ff::10/128"))
	if p.Community.String != "65000:600" {
		t.Errorf("2001:db8:ff::10/128 at FRR: communities %q, want 65000:600", p.Community.String)
	}

	// Withdrawal of one path, then shutdown withdraws the rest.
	must(t, s.SetPaths(paths[1:]))
	waitFor(t, 5*time.Second, func() (bool, string) {
		got := frrRoutes(t, info.FRR, "ipv4")
		_, ok := got["203.0.113.10/32"]
		return !ok, fmt.Sprintf("203.0.113.10/32 still at FRR: %v", got)
	})
	must(t, s.stop())
	stopped := time.Now()
	// FRR reads and processes in separate threads, so a show command right after Run
	// returns can still beat the withdrawals that Run wrote.
	for _, afi := range []string{"ipv4", "ipv6"} {
		waitFor(t, 2*time.Second, func() (bool, string) {
			got := frrRoutes(t, info.FRR, afi)
			return len(got) == 0, fmt.Sprintf("FRR's %s table after Run returned: %v, want empty", afi, got)
		})
	}
	t.Logf("FRR's tables were empty %s after Run returned", time.Since(stopped))
	out := must1(vtysh(info.FRR, "show bgp neighbors "+li.Node4.String()+" json"))
	if !strings.Contains(out, "Administrative Shutdown") {
		t.Errorf("FRR does not report our Administrative Shutdown for %s:\n%s", li.Node4, out)
	}
}

// matchFRR checks that got has want's prefixes with want's next hops, and nothing else.
func matchFRR(want, got map[string][]string) (bool, string) {
	for prefix, hops := range want {
		g := slices.Clone(got[prefix])
		slices.Sort(g)
		if !slices.Equal(g, hops) {
			return false, fmt.Sprintf("%s has next hops %v at FRR, want %v (table %v)", prefix, g, hops, got)
		}
	}
	if len(got) != len(want) {
		return false, fmt.Sprintf("FRR has %d routes, want %d: %v", len(got), len(want), got)
	}
	return true, ""
}

func fmtPtr(p *uint32) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

func only(t *testing.T, paths []frrPath) frrPath {
	t.Helper()
	if len(paths) != 1 {
		t.Fatalf("FRR has %d paths, want 1: %+v", len(paths), paths)
	}
	return paths[0]
}
