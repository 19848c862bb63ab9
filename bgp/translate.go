package bgp

// Translation of our values into GoBGP's API structs. Pure; see README.md for how sessions
// and per-peer routes map onto GoBGP.

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/types/known/anypb"
)

// globalRIB is GoBGP's name for the global table in policy assignments.
const globalRIB = "global"

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// apiGlobal is GoBGP's global configuration for cfg.
func apiGlobal(cfg *Config) *api.Global {
	port := cfg.ListenPort
	if port <= 0 {
		port = -1 // GoBGP: no listener; 0 would mean 179
	}
	return &api.Global{
		Asn:        cfg.ASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: port,
	}
}

// importPolicy names the global import policy.
const importPolicy = "ironlb-local-only"

// apiImportPolicy accepts the speaker's own routes and nothing else. GoBGP applies the global
// import policy to every path entering its RIB, the locally added ones included, so a plain
// "reject all" would also drop ours. Speakers only announce; a route learned from a router
// could only cause harm (and would cost memory).
func apiImportPolicy() (*api.Policy, *api.PolicyAssignment) {
	policy := &api.Policy{
		Name: importPolicy,
		Statements: []*api.Statement{{
			Name:       importPolicy + "-accept-local",
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		}},
	}
	return policy, &api.PolicyAssignment{
		Name:          globalRIB,
		Direction:     api.PolicyDirection_IMPORT,
		Policies:      []*api.Policy{{Name: importPolicy}},
		DefaultAction: api.RouteAction_REJECT,
	}
}

// apiVRF is the VRF that holds one peer's routes. index makes its route distinguisher and
// route target unique, so that no route of one peer's VRF is imported into another's. Both
// stay inside GoBGP: a VRF-bound neighbor receives its routes as plain unicast, without the
// route target.
func apiVRF(name string, index uint32) (*api.Vrf, error) {
	rd, err := apiutil.MarshalRD(bgp.NewRouteDistinguisherTwoOctetAS(0, index))
	if err != nil {
		return nil, fmt.Errorf("encoding the route distinguisher of VRF %s: %w", name, err)
	}
	rt, err := apiutil.MarshalRT(bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, 0, index, true))
	if err != nil {
		return nil, fmt.Errorf("encoding the route target of VRF %s: %w", name, err)
	}
	return &api.Vrf{Name: name, Rd: rd, ImportRt: []*anypb.Any{rt}, ExportRt: []*anypb.Any{rt}}, nil
}

// apiPeer is GoBGP's neighbor configuration for a normalized peer, bound to the VRF vrf.
func apiPeer(p *Peer, vrf string, connectRetry time.Duration) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.PeerASN,
			LocalAsn:        p.LocalASN,
			AuthPassword:    p.Password,
			Description:     p.Name,
			Vrf:             vrf,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      max(seconds(connectRetry), 1),
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.KeepaliveTime),
		}},
		Transport: &api.Transport{
			RemotePort:   uint32(p.Port),
			LocalAddress: addrString(p.SourceAddress),
		},
	}
	if p.EBGPMultiHop > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultiHop)}
	}
	if p.GracefulRestart {
		ap.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(seconds(p.RestartTime))}
	}
	for _, f := range []*api.Family{familyIPv4, familyIPv6} {
		ap.AfiSafis = append(ap.AfiSafis, &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: f, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: p.GracefulRestart}},
		})
	}
	return ap
}

// apiPath is GoBGP's path for a route: ORIGIN IGP, the next hop (unspecified: GoBGP
// substitutes the session's local address), communities, large communities and
// LOCAL_PREF. GoBGP adds the AS_PATH and drops LOCAL_PREF on eBGP sessions.
func apiPath(prefix netip.Prefix, a *attrs, withdraw bool) (*api.Path, error) {
	var nlri bgp.AddrPrefixInterface
	nextHop := a.nextHop
	pattrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if prefix.Addr().Is4() {
		nlri = bgp.NewIPAddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		if !nextHop.IsValid() {
			nextHop = netip.IPv4Unspecified()
		}
		pattrs = append(pattrs, bgp.NewPathAttributeNextHop(nextHop.String()))
	} else {
		nlri = bgp.NewIPv6AddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		if !nextHop.IsValid() {
			nextHop = netip.IPv6Unspecified()
		}
		pattrs = append(pattrs, bgp.NewPathAttributeMpReachNLRI(nextHop.String(), []bgp.AddrPrefixInterface{nlri}))
	}
	if len(a.communities) > 0 {
		pattrs = append(pattrs, bgp.NewPathAttributeCommunities(a.communities))
	}
	if len(a.large) > 0 {
		large := make([]*bgp.LargeCommunity, len(a.large))
		for i, c := range a.large {
			large[i] = bgp.NewLargeCommunity(c.ASN, c.Local1, c.Local2)
		}
		pattrs = append(pattrs, bgp.NewPathAttributeLargeCommunities(large))
	}
	if a.hasLocalPref {
		pattrs = append(pattrs, bgp.NewPathAttributeLocalPref(a.localPref))
	}
	p, err := apiutil.NewPath(nlri, withdraw, pattrs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("encoding path %s: %w", prefix, err)
	}
	return p, nil
}

// sessionState maps GoBGP's session state to RFC 4271's name.
func sessionState(s api.PeerState_SessionState) State {
	switch s {
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	default:
		return StateIdle
	}
}

// negotiatedFamilies reports which unicast families a session carries: those the peer
// announced in its multiprotocol capabilities (we announce both), or IPv4 alone when it
// announced none (RFC 4760 section 8).
func negotiatedFamilies(remoteCaps []*anypb.Any) (v4, v6 bool) {
	mp := false
	for _, c := range remoteCaps {
		var m api.MultiProtocolCapability
		if !c.MessageIs(&m) || c.UnmarshalTo(&m) != nil || m.Family == nil {
			continue
		}
		mp = true
		switch {
		case m.Family.Afi == familyIPv4.Afi && m.Family.Safi == familyIPv4.Safi:
			v4 = true
		case m.Family.Afi == familyIPv6.Afi && m.Family.Safi == familyIPv6.Safi:
			v6 = true
		}
	}
	if !mp {
		return true, false
	}
	return v4, v6
}
