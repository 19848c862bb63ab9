package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestAPIPeer(t *testing.T) {
	afiSafis := func(gr bool) []*api.AfiSafi {
		var out []*api.AfiSafi
		for _, f := range []*api.Family{familyIPv4, familyIPv6} {
			out = append(out, &api.AfiSafi{
				Config:            &api.AfiSafiConfig{Family: f, Enabled: true},
				MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: gr}},
			})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		peer Peer
		want *api.Peer
	}{{
		name: "defaults: eBGP, port 179, 90 s hold time, both unicast families",
		peer: Peer{Name: "r", Address: netip.MustParseAddr("198.51.100.1"), PeerASN: 65001},
		want: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: "198.51.100.1", PeerAsn: 65001, LocalAsn: 65000, Description: "r", Vrf: "vrf-r"},
			Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 90, KeepaliveInterval: 30}},
			Transport: &api.Transport{RemotePort: 179},
			AfiSafis:  afiSafis(false),
		},
	}, {
		name: "the password, port, source address, timers, multihop and graceful restart reach GoBGP",
		peer: Peer{Name: "r", Address: netip.MustParseAddr("2001:db8::1"), Port: 1179, PeerASN: 65001, LocalASN: 4200000000,
			SourceAddress: netip.MustParseAddr("2001:db8::2"), HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
			EBGPMultiHop: 3, Password: "s3cret", GracefulRestart: true, RestartTime: 60 * time.Second},
		want: &api.Peer{
			Conf: &api.PeerConf{NeighborAddress: "2001:db8::1", PeerAsn: 65001, LocalAsn: 4200000000, AuthPassword: "s3cret",
				Description: "r", Vrf: "vrf-r"},
			Timers:          &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 9, KeepaliveInterval: 3}},
			Transport:       &api.Transport{RemotePort: 1179, LocalAddress: "2001:db8::2"},
			EbgpMultihop:    &api.EbgpMultihop{Enabled: true, MultihopTtl: 3},
			GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: 60},
			AfiSafis:        afiSafis(true),
		},
	}, {
		name: "iBGP",
		peer: Peer{Name: "r", Address: netip.MustParseAddr("198.51.100.1"), PeerASN: 65000},
		want: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: "198.51.100.1", PeerAsn: 65000, LocalAsn: 65000, Description: "r", Vrf: "vrf-r"},
			Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 90, KeepaliveInterval: 30}},
			Transport: &api.Transport{RemotePort: 179},
			AfiSafis:  afiSafis(false),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.peer.normalize(65000)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, apiPeer(&p, "vrf-r", 5*time.Second), protocmp.Transform()); diff != "" {
				t.Errorf("apiPeer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAPIGlobal(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RouterID, cfg.ASN = netip.MustParseAddr("198.51.100.2"), 65000
	for _, tc := range []struct {
		port, want int32
	}{{-1, -1}, {0, -1}, {179, 179}, {1179, 1179}} {
		cfg.ListenPort = tc.port
		want := &api.Global{Asn: 65000, RouterId: "198.51.100.2", ListenPort: tc.want}
		if diff := cmp.Diff(want, apiGlobal(&cfg), protocmp.Transform()); diff != "" {
			t.Errorf("ListenPort %d (-want +got):\n%s", tc.port, diff)
		}
	}
}

func TestAPIPath(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prefix   string
		attrs    attrs
		withdraw bool
		want     []bgp.PathAttributeInterface
	}{{
		name:   "IPv4, next hop left to GoBGP",
		prefix: "203.0.113.10/32",
		want:   []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeNextHop("0.0.0.0")},
	}, {
		name:   "IPv6 with an explicit next hop and every attribute",
		prefix: "2001:db8:ff::/64",
		attrs: attrs{nextHop: netip.MustParseAddr("2001:db8::2"), communities: []uint32{65000<<16 | 1}, large: []largeCommunity{{1, 2, 3}},
			localPref: 200, hasLocalPref: true},
		want: []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(0),
			bgp.NewPathAttributeMpReachNLRI("2001:db8::2", []bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(64, "2001:db8:ff::")}),
			bgp.NewPathAttributeCommunities([]uint32{65000<<16 | 1}),
			bgp.NewPathAttributeLargeCommunities([]*bgp.LargeCommunity{bgp.NewLargeCommunity(1, 2, 3)}),
			bgp.NewPathAttributeLocalPref(200),
		},
	}, {
		name:   "IPv4 with an explicit next hop (a cross-family one from the configuration)",
		prefix: "203.0.113.0/24",
		attrs:  attrs{nextHop: netip.MustParseAddr("198.51.100.2")},
		want:   []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeNextHop("198.51.100.2")},
	}, {
		name:     "withdrawal",
		prefix:   "203.0.113.10/32",
		withdraw: true,
		want:     []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeNextHop("0.0.0.0")},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := netip.MustParsePrefix(tc.prefix)
			p, err := apiPath(prefix, &tc.attrs, tc.withdraw)
			if err != nil {
				t.Fatal(err)
			}
			if p.IsWithdraw != tc.withdraw {
				t.Errorf("IsWithdraw = %v", p.IsWithdraw)
			}
			nlri, err := apiutil.GetNativeNlri(p)
			if err != nil {
				t.Fatal(err)
			}
			if nlri.String() != tc.prefix {
				t.Errorf("NLRI %s, want %s", nlri, tc.prefix)
			}
			got, err := apiutil.GetNativePathAttributes(p)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(attrStrings(tc.want), attrStrings(got)); diff != "" {
				t.Errorf("attributes (-want +got):\n%s", diff)
			}
		})
	}
}

func attrStrings(attrs []bgp.PathAttributeInterface) []string {
	var out []string
	for _, a := range attrs {
		out = append(out, a.GetType().String()+" "+a.String())
	}
	return out
}

func TestAPIVRF(t *testing.T) {
	v, err := apiVRF("r", 7)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := apiutil.UnmarshalRD(v.Rd)
	if err != nil {
		t.Fatal(err)
	}
	rts, err := apiutil.UnmarshalRTs(v.ImportRt)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "r" || rd.String() != "0:7" || len(rts) != 1 || rts[0].String() != "0:7" || len(v.ExportRt) != 1 {
		t.Errorf("VRF %s: RD %s, import RTs %v, %d export RTs; want r, 0:7, [0:7], 1", v.Name, rd, rts, len(v.ExportRt))
	}
}

func TestSessionStateNames(t *testing.T) {
	for s, want := range map[api.PeerState_SessionState]State{
		api.PeerState_UNKNOWN: StateIdle, api.PeerState_IDLE: StateIdle, api.PeerState_CONNECT: StateConnect,
		api.PeerState_ACTIVE: StateActive, api.PeerState_OPENSENT: StateOpenSent, api.PeerState_OPENCONFIRM: StateOpenConfirm,
		api.PeerState_ESTABLISHED: StateEstablished,
	} {
		if got := sessionState(s); got != want {
			t.Errorf("sessionState(%s) = %s, want %s", s, got, want)
		}
	}
	for s, want := range map[string]string{"BGP_FSM_OPENCONFIRM": "OpenConfirm", "BGP_FSM_IDLE": "Idle", "weird": "weird"} {
		if got := fsmStateName(s); got != want {
			t.Errorf("fsmStateName(%s) = %s, want %s", s, got, want)
		}
	}
}

func TestNegotiatedFamilies(t *testing.T) {
	mp := func(f *api.Family) *anypb.Any {
		a, err := anypb.New(&api.MultiProtocolCapability{Family: f})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	other, _ := anypb.New(&api.RouteRefreshCapability{})
	for _, tc := range []struct {
		name   string
		caps   []*anypb.Any
		v4, v6 bool
	}{
		{"no multiprotocol capability: IPv4 only", []*anypb.Any{other}, true, false},
		{"IPv6 only", []*anypb.Any{other, mp(familyIPv6)}, false, true},
		{"both", []*anypb.Any{mp(familyIPv4), mp(familyIPv6)}, true, true},
		{"others only", []*anypb.Any{mp(&api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN})}, false, false},
	} {
		if v4, v6 := negotiatedFamilies(tc.caps); v4 != tc.v4 || v6 != tc.v6 {
			t.Errorf("%s: IPv4 %v IPv6 %v, want %v %v", tc.name, v4, v6, tc.v4, tc.v6)
		}
	}
}
