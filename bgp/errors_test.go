package bgp

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Addresses on link 1 for the sessions that fail. BIRD tells sessions apart by the node's
// address, so each session has its own on both ends.
var (
	routerWrongPeerASN  = netip.MustParseAddr("198.51.100.21") // BIRD is AS 65001, we expect 65099
	nodeWrongPeerASN    = netip.MustParseAddr("198.51.100.24")
	routerWrongLocalASN = netip.MustParseAddr("198.51.100.22") // BIRD expects us as AS 65000, we say 65007
	nodeWrongLocalASN   = netip.MustParseAddr("198.51.100.25")
	nobody              = netip.MustParseAddr("198.51.100.29") // on link 1, no host
	noRoute             = netip.MustParseAddr("2001:db8:ffff::1")
)

// TestSessionErrors: bad configuration is reported per session while the others keep
// working: a wrong peer ASN (our NOTIFICATION), a wrong local ASN (the router's
// NOTIFICATION), an unreachable peer, a peer without route, a peer the caller could not
// configure (Peer.ConfigError), an invalid peer, and an address used twice. Fixing the ASN
// clears the error and the session comes up.
func TestSessionErrors(t *testing.T) {
	if info := inChild(t); info != nil {
		errorsChild(t, info)
		return
	}
	l := newLab(t, 1)
	l.addAddress(true, 1, routerWrongPeerASN)
	l.addAddress(true, 1, routerWrongLocalASN)
	l.addAddress(false, 1, nodeWrongPeerASN)
	l.addAddress(false, 1, nodeWrongLocalASN)
	li := l.info.Links[0]
	l.startBIRD(birdEBGP(li, fmt.Sprintf(`
protocol bgp wrongpeer from node { local %s as %d; neighbor %s as %d; }
protocol bgp wronglocal from node { local %s as %d; neighbor %s as %d; }
`, routerWrongPeerASN, routerASN, nodeWrongPeerASN, nodeASN, routerWrongLocalASN, routerASN, nodeWrongLocalASN, nodeASN)))
	l.runChild()
}

func errorsChild(t *testing.T, info *labInfo) {
	li := info.Links[0]
	s := startSpeaker(t, testConfig(t, li))
	good := Peer{Name: "good", Address: li.Router4, PeerASN: routerASN}
	wrongPeer := Peer{Name: "wrong-peer-asn", Address: routerWrongPeerASN, SourceAddress: nodeWrongPeerASN, PeerASN: 65099}
	peers := []Peer{
		good,
		wrongPeer,
		{Name: "wrong-local-asn", Address: routerWrongLocalASN, SourceAddress: nodeWrongLocalASN, PeerASN: routerASN, LocalASN: 65007},
		{Name: "unreachable", Address: nobody, PeerASN: routerASN},
		{Name: "no-route", Address: noRoute, PeerASN: routerASN},
		{Name: "no-secret", Address: li.Router6, PeerASN: routerASN,
			ConfigError: `reading the password: secrets "bgp-password" not found in namespace "ironlb-system"`},
		{Name: "invalid", Address: netip.MustParseAddr("198.51.100.23"), PeerASN: nodeASN, EBGPMultiHop: 2},
		{Name: "zz-same-address", Address: li.Router4, PeerASN: routerASN},
	}
	must(t, s.SetPeers(peers))
	must(t, s.SetPaths([]Path{{Prefix: netip.MustParsePrefix("203.0.113.10/32")}}))

	q := regexp.QuoteMeta
	want := map[string]string{ // regular expressions
		"wrong-peer-asn": "^" + q("sent NOTIFICATION: OPEN Message Error, Bad Peer AS (as number mismatch expected 65099, received 65001)") + "$",
		// BIRD sends its OPEN before it reads ours, so GoBGP is usually in OpenConfirm.
		"wrong-local-asn": `^received a NOTIFICATION in state Open(Sent|Confirm) ` + q("(GoBGP v3 does not decode it before the session is established): "+
			"the router refused this node's OPEN; check that the router expects this node as it presents itself (AS 65007, router ID 198.51.100.18, from 198.51.100.25)") + "$",
		// ARP gives up after 3 s, the connection attempt after 4 s: either can come first.
		"unreachable":     "^" + q("connecting to 198.51.100.29:179: ") + "(connect: no route to host|i/o timeout)$",
		"no-route":        "^" + q("connecting to [2001:db8:ffff::1]:179: connect: network is unreachable") + "$",
		"no-secret":       "^" + q(peers[5].ConfigError) + "$",
		"invalid":         "^" + q("invalid peer: eBGP multihop is set on an iBGP session (peer ASN equals local ASN)") + "$",
		"zz-same-address": "^" + q("address 198.51.100.17 is also the address of peer good, which is configured instead (GoBGP keeps one session per address)") + "$",
	}
	waitFor(t, 15*time.Second, func() (bool, string) {
		var wrong []string
		for _, st := range s.Sessions() {
			if w, ok := want[st.Peer]; ok && !regexp.MustCompile(w).MatchString(st.LastError) {
				wrong = append(wrong, fmt.Sprintf("%s: %q, want /%s/", st.Peer, st.LastError, w))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "; ")
	})
	for _, st := range s.Sessions() {
		t.Logf("%-16s %-11s %q (since %s)", st.Peer, st.State, st.LastError, st.LastErrorTime.Format(time.TimeOnly))
		if st.Peer == "good" {
			if st.State != StateEstablished || st.LastError != "" || st.PrefixesSent != 1 {
				t.Errorf("the good session: %+v, want Established without error, 1 prefix sent", st)
			}
			continue
		}
		if st.State == StateEstablished || st.LastErrorTime.IsZero() {
			t.Errorf("session %s: %+v, want not Established, with an error time", st.Peer, st)
		}
	}
	if _, ok := birdRoutesOf(t, info.BIRD, "node4")["203.0.113.10/32"]; !ok {
		t.Errorf("the good session's route is not at the router")
	}

	// A repeated error keeps its time: the unreachable peer fails every ConnectRetry.
	first := s.session(t, "unreachable").LastErrorTime
	time.Sleep(6 * time.Second)
	if again := s.session(t, "unreachable"); again.LastErrorTime != first {
		t.Errorf("the unreachable peer's error time moved from %s to %s for the same error", first, again.LastErrorTime)
	}

	// Fixing the peer ASN replaces the session: the error goes, the session comes up.
	drain(s.Changes())
	wrongPeer.PeerASN = routerASN
	peers[1] = wrongPeer
	must(t, s.SetPeers(peers))
	select {
	case <-s.Changes():
	case <-time.After(time.Second):
		t.Errorf("no change signalled after SetPeers")
	}
	st := s.waitState(t, "wrong-peer-asn", StateEstablished, 15*time.Second)
	if st.LastError != "" {
		t.Errorf("fixed session %+v still has an error", st)
	}
	if got := s.session(t, "good"); got.State != StateEstablished {
		t.Errorf("the good session is %s after the others changed", got.State)
	}
}

func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
