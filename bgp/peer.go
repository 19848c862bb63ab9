package bgp

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Peer is one desired BGP session, usually from a BGPPeer that selects this node. The zero
// value of each optional field means the default given in its comment. Peer is comparable;
// SetPeers replaces a session whose Peer changed in any field.
type Peer struct {
	// Name identifies the session (the BGPPeer's name): Path.Peers and SessionState.Peer
	// refer to it. Required and unique within a SetPeers call.
	Name string
	// Address is the router's address, IPv4 or IPv6 without zone. Required. GoBGP keeps one
	// session per address, so two peers with the same address conflict: the one whose name
	// sorts first is configured, the other reports the conflict as its error.
	Address netip.Addr
	// Port is the router's TCP port. 0: 179.
	Port uint16
	// PeerASN is the router's AS number. Required. Equal to LocalASN for iBGP.
	PeerASN uint32
	// LocalASN is the AS number this node uses on the session. 0: Config.ASN.
	LocalASN uint32
	// SourceAddress is the local address the session connects from, in Address's family; it
	// must be configured on the node. Zero: the kernel picks it from the route to Address.
	SourceAddress netip.Addr
	// HoldTime is the hold time proposed in OPEN, whole seconds from 3 s to 65535 s (rounded
	// up to a second). 0: 90 s. GoBGP v3 cannot run a session without hold timer (RFC
	// 4271's hold time 0), so there is no way to ask for one here.
	HoldTime time.Duration
	// KeepaliveTime is the interval between KEEPALIVEs: at least 1 s and less than
	// HoldTime. 0: a third of HoldTime. When the router proposes a shorter hold time than
	// HoldTime, GoBGP sends KEEPALIVEs every third of the negotiated one instead.
	KeepaliveTime time.Duration
	// EBGPMultiHop is the TTL of an eBGP session's packets, 1 to 255, for a router that is
	// not directly connected. 0: directly connected (TTL 1, GoBGP's default for eBGP).
	// Refused for iBGP, whose packets are not TTL-limited.
	EBGPMultiHop uint8
	// Password is the TCP MD5 signature key (RFC 2385); empty: none. It needs kernel support
	// (CONFIG_TCP_MD5SIG); without it every connection attempt fails and the session's
	// LastError says so. At most 80 bytes (the kernel's TCP_MD5SIG_MAXKEYLEN).
	Password string
	// GracefulRestart advertises the graceful restart capability (RFC 4724) for IPv4 and
	// IPv6 unicast, so that the router keeps this node's routes for RestartTime when the
	// session drops without a NOTIFICATION (a crash, a restart). Run's shutdown withdraws
	// the routes first, so a clean exit never leaves them behind.
	GracefulRestart bool
	// RestartTime is the restart time advertised with GracefulRestart, 1 s to 4095 s.
	// 0: 120 s. Ignored without GracefulRestart.
	RestartTime time.Duration
	// ConfigError, when set, says why the session cannot be configured as intended, for a
	// problem found by the caller; the usual one is a password Secret that could not be
	// read. The session is then not configured at all (connecting without the password
	// would not be the session the operator asked for), its state is Idle and LastError is
	// this text.
	ConfigError string
}

// Defaults applied by normalize.
const (
	defaultPort        = 179
	defaultHoldTime    = 90 * time.Second
	defaultRestartTime = 120 * time.Second
	maxPasswordLength  = 80
)

// normalize checks a peer and fills in the defaults, so that two peers with the same
// effective configuration compare equal.
func (p Peer) normalize(localASN uint32) (Peer, error) {
	var errs []string
	if p.Name == "" {
		errs = append(errs, "name is empty")
	}
	p.Address = p.Address.Unmap()
	switch {
	case !p.Address.IsValid():
		errs = append(errs, "address is not set")
	case p.Address.Zone() != "":
		errs = append(errs, fmt.Sprintf("address %s has a zone, which is not supported", p.Address))
	case p.Address.IsUnspecified() || p.Address.IsMulticast() || p.Address == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		errs = append(errs, fmt.Sprintf("address %s is not a unicast address", p.Address))
	}
	if p.Port == 0 {
		p.Port = defaultPort
	}
	if p.PeerASN == 0 {
		errs = append(errs, "peer ASN is not set")
	}
	if p.LocalASN == 0 {
		p.LocalASN = localASN
	}
	p.SourceAddress = p.SourceAddress.Unmap()
	if p.SourceAddress.IsValid() && p.Address.IsValid() && p.SourceAddress.Is4() != p.Address.Is4() {
		errs = append(errs, fmt.Sprintf("source address %s is not in the family of the peer address %s", p.SourceAddress, p.Address))
	}
	if p.HoldTime == 0 {
		p.HoldTime = defaultHoldTime
	}
	p.HoldTime = time.Duration(seconds(p.HoldTime)) * time.Second
	if p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second {
		errs = append(errs, fmt.Sprintf("hold time %s is outside 3s-65535s", secs(p.HoldTime)))
	}
	if p.KeepaliveTime == 0 {
		p.KeepaliveTime = p.HoldTime / 3
	}
	p.KeepaliveTime = time.Duration(seconds(p.KeepaliveTime)) * time.Second
	if p.KeepaliveTime < time.Second || p.KeepaliveTime >= p.HoldTime {
		errs = append(errs, fmt.Sprintf("keepalive time %s must be at least 1s and less than the hold time %s", secs(p.KeepaliveTime), secs(p.HoldTime)))
	}
	if p.EBGPMultiHop != 0 && p.PeerASN == p.LocalASN {
		errs = append(errs, "eBGP multihop is set on an iBGP session (peer ASN equals local ASN)")
	}
	if len(p.Password) > maxPasswordLength {
		errs = append(errs, fmt.Sprintf("password is %d bytes long, the kernel accepts at most %d", len(p.Password), maxPasswordLength))
	}
	if p.GracefulRestart {
		if p.RestartTime == 0 {
			p.RestartTime = defaultRestartTime
		}
		p.RestartTime = time.Duration(seconds(p.RestartTime)) * time.Second
		if p.RestartTime > 4095*time.Second {
			errs = append(errs, fmt.Sprintf("restart time %s is above 4095s", secs(p.RestartTime)))
		}
	} else {
		p.RestartTime = 0
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("invalid peer: %s", strings.Join(errs, "; "))
	}
	return p, nil
}

// secs prints a duration in seconds, as BGP timers are given ("90s", not "1m30s").
func secs(d time.Duration) string { return fmt.Sprintf("%ds", seconds(d)) }
