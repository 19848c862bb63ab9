// Package l2 is ironlb's layer-2 data plane: it makes the LAN send traffic for a
// LoadBalancer IP to the one node that owns it.
//
// The pieces, from pure to I/O:
//
//   - [Owner] elects the node that announces an IP among the eligible ones (rendezvous
//     hashing, DESIGN.md section 5). It is pure and deterministic: every speaker computes
//     the same owner from the same candidates, without talking to the others.
//   - [ChooseInterfaces] picks the interfaces an owned IP is announced on, from an
//     L2Advertisement's names and globs or, by default, from the subnets on the node's
//     interfaces. [Interfaces] reads those interfaces.
//   - [Announcer] answers ARP requests (RFC 826) for owned IPv4 addresses and Neighbor
//     Solicitations (RFC 4861 section 7.2.4) for owned IPv6 addresses, each only on the
//     interfaces it was given, and announces newly owned addresses with gratuitous ARP
//     (RFC 5227 section 2.3, "ARP Announcement") and unsolicited Neighbor Advertisements with
//     the Override flag (RFC 4861 section 7.2.6).
//
// Frames are read and written on AF_PACKET sockets (github.com/mdlayher/packet) and parsed
// and built by the pure functions in frame.go, which are fuzzed against
// github.com/mdlayher/arp and github.com/mdlayher/ndp. The sockets need CAP_NET_RAW.
// README.md explains the design and the Linux behaviour it relies on.
package l2
