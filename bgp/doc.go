// Package bgp is the node speaker's BGP edge: one embedded GoBGP v3 server
// (github.com/osrg/gobgp/v3, BGP-4 as in RFC 4271 with multiprotocol extensions, RFC 4760)
// that opens the sessions it is given and announces the routes it is given, and reports how
// each session is doing. It decides nothing: the speaker's planner says which prefixes go
// to which peers with which attributes.
//
// The API, in the order the speaker uses it:
//
//   - [New] with a [Config] (router ID, local AS, next hops for cross-family paths); it
//     starts nothing.
//   - [Speaker.SetPeers] with the desired sessions ([Peer], from the BGPPeers that select
//     the node) and [Speaker.SetPaths] with the desired announcements ([Path]). Both can be
//     called before and while [Speaker.Run] runs, as often as the plan changes; each applies
//     only the difference, and an unchanged call sends nothing to any router.
//   - [Speaker.Run] starts GoBGP and returns when its context ends, after withdrawing every
//     route and closing every session, so a SIGTERM takes the node out of the routers' ECMP
//     at once instead of after the hold time.
//   - [Speaker.Sessions] says how each session is doing ([SessionState]: RFC 4271 state,
//     last error, prefix counts); [Speaker.Changes] signals when that may have changed. The
//     speaker writes BGPSessionState objects and metrics from them.
//
// Bad configuration is reported per session, never fatal: an invalid Peer, an unresolvable
// password (Peer.ConfigError), a wrong AS number, an unreachable router, a kernel that
// refuses the TCP MD5 password each show up as that session's LastError while the other
// sessions keep working.
//
// README.md explains how sessions and per-peer routes map onto GoBGP (one VRF per peer),
// the next-hop rules, where the errors come from and what happens at shutdown.
package bgp
