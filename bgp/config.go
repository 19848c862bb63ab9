package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Config is the speaker's node-wide configuration; DefaultConfig gives every tunable with its
// reason. Sessions and paths are not configured here but with SetPeers and SetPaths.
type Config struct {
	// RouterID is the BGP identifier sent in OPEN messages on every session (RFC 4271 section
	// 4.2): an IPv4 address, also when all sessions are IPv6, and unique per node, because
	// routers refuse a session whose identifier equals their own and collide sessions that
	// share one. Usually the node's IPv4 address. Required: Run fails without it. GoBGP has one
	// identifier per server, so changing it (or ASN) means a new Speaker: ironlb's speaker
	// stops this one and starts another in the same process, and every session resets.
	RouterID netip.Addr

	// ASN is the local autonomous system number: the default for Peer.LocalASN, and GoBGP's
	// global AS. 1 to 4294967295 (4-byte ASNs work). Required: Run fails without it.
	ASN uint32

	// ListenPort is the TCP port on which sessions from peers are accepted. 0 or negative:
	// none, the speaker only connects out (the default, -1). Listening on 179 needs the port
	// to be free on the node, which it is not where another BGP daemon runs; outgoing
	// sessions alone work with any router that accepts them (routers are usually configured
	// to peer with the nodes' addresses anyway).
	ListenPort int32

	// NextHopIPv4 and NextHopIPv6 are this node's addresses used as the next hop of a path
	// whose family differs from its session's: an IPv6 prefix over an IPv4 session needs an
	// IPv6 next hop, and an IPv4 prefix over an IPv6 session an IPv4 one. A path in the
	// session's own family leaves the next hop to GoBGP, which uses the session's local
	// address. Zero: such cross-family paths are not announced, and SetPaths says why. A
	// Path's own NextHop overrides both.
	NextHopIPv4, NextHopIPv6 netip.Addr

	// ConnectRetry is how long GoBGP waits between attempts to open a session whose
	// connection failed: a random time between once and twice this value. (A new session's
	// first attempt comes within 1-2 s; a session that went down is retried after 5 s of
	// idle hold and then 1-2 s.) Each attempt times out after ConnectRetry - 1 s. Whole
	// seconds, rounded up.
	ConnectRetry time.Duration

	// ShutdownTimeout bounds how long Run, when its context ends, waits for the withdrawals
	// and the closing NOTIFICATION to be written to each established session before it stops
	// GoBGP anyway (a peer that stopped reading cannot hold the process).
	ShutdownTimeout time.Duration

	// Log receives the speaker's logs and GoBGP's (GoBGP's debug messages at debug level).
	// Nil: slog.Default().
	Log *slog.Logger
}

// DefaultConfig returns the defaults; RouterID and ASN have none.
//   - ListenPort -1: sessions are opened by the speaker only, so the node's port 179 stays
//     free and no router can open a session that no BGPPeer configures.
//   - ConnectRetry 5 s (GoBGP's default is 120 s, RFC 4271's suggestion): the speaker is the
//     only side that opens sessions, so after a router restart or a network cut the session
//     comes back within 5-10 s instead of 2-4 minutes. Each attempt is one TCP SYN.
//   - ShutdownTimeout 3 s: writing a few thousand withdrawals takes milliseconds on a LAN;
//     3 s covers a slow peer and stays well within Kubernetes' default 30 s grace period.
func DefaultConfig() Config {
	return Config{
		ListenPort:      -1,
		ConnectRetry:    5 * time.Second,
		ShutdownTimeout: 3 * time.Second,
	}
}

// Validate reports the problems that make the configuration unusable (Run refuses it).
func (c *Config) Validate() error {
	var errs []error
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		errs = append(errs, fmt.Errorf("router ID %q must be a non-zero IPv4 address", addrString(c.RouterID)))
	}
	if c.ASN == 0 {
		errs = append(errs, errors.New("ASN must be set (1 to 4294967295)"))
	}
	if c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d is above 65535", c.ListenPort))
	}
	if c.NextHopIPv4.IsValid() && (!c.NextHopIPv4.Is4() || c.NextHopIPv4.IsUnspecified()) {
		errs = append(errs, fmt.Errorf("IPv4 next hop %s must be an IPv4 unicast address", c.NextHopIPv4))
	}
	if c.NextHopIPv6.IsValid() && (!c.NextHopIPv6.Is6() || c.NextHopIPv6.Is4In6() || c.NextHopIPv6.IsUnspecified() || c.NextHopIPv6.Zone() != "") {
		errs = append(errs, fmt.Errorf("IPv6 next hop %s must be an IPv6 unicast address without zone", c.NextHopIPv6))
	}
	if c.ConnectRetry < 0 || c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("ConnectRetry and ShutdownTimeout must not be negative"))
	}
	return errors.Join(errs...)
}

// addrString prints an address, or "" for the zero value (netip prints "invalid IP").
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// seconds converts a duration to whole seconds, rounding up, as BGP timers are carried.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}
