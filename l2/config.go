package l2

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// AnnouncerConfig tunes an Announcer. The zero value of each field has a meaning given
// below; DefaultAnnouncerConfig gives every value with its reason.
type AnnouncerConfig struct {
	// GratuitousCount is how many times an IP is announced when this node takes it over
	// (when SetOwned adds it to an interface, or an interface's responder opens again after
	// a failure): once at once, then GratuitousCount-1 more times, GratuitousInterval apart.
	// Each announcement of an IPv4 address is two frames (a gratuitous ARP request and a
	// gratuitous ARP reply, see README.md); of an IPv6 address, one unsolicited Neighbor
	// Advertisement with the Override flag. More repeats survive more loss and reach hosts
	// that ignored an earlier one (Linux ignores a non-gratuitous ARP within a second of the
	// previous update: its locktime), at the cost of more broadcast frames on every host of
	// the LAN when many IPs move at once (1,000 IPv4 addresses moving with the default cost
	// 6,000 frames over a second). Zero or negative sends none: neighbours then keep the old
	// owner's address until their entry goes stale and they ask again (Linux: 15-45 s, plus
	// up to 5 s of delay and 3 s of unicast probes), which is a failover of that length.
	GratuitousCount int

	// GratuitousInterval is the time between two announcements of the same IP. A shorter
	// interval repairs a lost first announcement sooner; a longer one spreads the repeats
	// over a longer disturbance (a switch port still coming up, the old owner still
	// answering for a moment). Zero or negative sends all announcements back to back.
	GratuitousInterval time.Duration

	// RetryInterval is how often a responder that could not open, or that failed while open
	// (its interface went down or away), is tried again while an owned IP still needs it.
	// Each try looks the interface up and opens a socket, which is cheap; a shorter interval
	// answers sooner once the interface is back. Zero or negative means 1 s.
	RetryInterval time.Duration

	// ReceiveBuffer is the receive buffer of each responder's socket, in bytes: how big a
	// burst of requests is queued while the responder is busy, instead of dropped (a
	// request takes about 800 bytes of it). It costs kernel memory only while requests are
	// queued. It is set with SO_RCVBUFFORCE when the process has CAP_NET_ADMIN, else
	// SO_RCVBUF, which the kernel caps at net.core.rmem_max. Zero or negative keeps the
	// kernel's default (net.core.rmem_default, usually 208 KiB: about 270 requests).
	ReceiveBuffer int

	// Logger receives the announcer's logs: interface failures at Warn, responders opened
	// and closed at Info, each gratuitous round and send error at Debug. Nil discards them.
	Logger *slog.Logger

	// OnEvent, if not nil, is called when a responder opens, fails or closes, so that the
	// speaker can turn failures into Kubernetes events and status. It is called from the
	// announcer's goroutine, one call at a time, and must return quickly; it may call
	// SetOwned, Status and Stats.
	OnEvent func(Event)

	// Probe tunes the probes sent before announcing an address the cluster has not
	// announced before (SetOwnedProbing).
	Probe ProbeConfig

	// Ours, if not nil, reports whether a hardware address belongs to this cluster's nodes:
	// a frame from one of them about a probed address is not a conflict (during an ownership
	// move the old owner may answer for a moment). This node's own interfaces never count.
	// It is called from the responders' goroutines and must be quick and safe for that.
	Ours func(net.HardwareAddr) bool

	// OpenIn, if not nil, runs open, which looks an interface up and opens its sockets, and
	// returns its error. It exists for tests, which run announcers inside network
	// namespaces: sockets stay in the namespace of the thread that opened them, so OpenIn
	// switches a locked thread into the namespace, calls open and switches back. Nil calls
	// open directly, in the namespace of the process.
	OpenIn func(open func() error) error
}

// DefaultAnnouncerConfig returns the speaker's tuning:
//   - GratuitousCount 3: the first announcement moves every neighbour that receives it at
//     once; two repeats cover the loss of one or two broadcast frames, and a neighbour that
//     was busy resolving the IP with the old owner during the first one (ARP requests and
//     replies can cross a failover). MetalLB and keepalived also repeat a few times.
//   - GratuitousInterval 500 ms: the repeats land within a second of the takeover, well
//     inside the failover budget (a sub-second failover is pointless if a lost first packet
//     costs 15 s). Each gratuitous update starts Linux's 1 s ARP locktime, during which a
//     neighbour ignores ordinary replies (say, a late one from the old owner); rounds 500 ms
//     apart keep the entry pinned to the new owner for 2 s without a gap. 2 frames x 3
//     rounds per IPv4 address is little broadcast traffic.
//   - RetryInterval 1 s: an interface that comes back is answered on within a second, for
//     one interface lookup per second while it is missing.
//   - Probe: 3 probes 100 ms apart, then 100 ms of silence: a new address is announced about
//     300 ms after it is owned (BENCHMARKS.md, "Probe before first announcement"). RFC 5227's
//     1-2 s intervals and 2 s wait (and IPv6 DAD's 1 s) are meant for hosts that may be
//     asleep; a host that uses an address answers an ARP request or a solicitation within
//     milliseconds, and three probes survive the loss of two. Only the first announcement of
//     an address by the cluster waits: a failover between our own nodes does not probe.
//     A conflicted address is probed again after 1 s, then 2, 4, 8 and every 16 s: three
//     frames per round are nothing on a LAN, and the address is taken within 16 s of the other
//     host letting it go.
//   - ReceiveBuffer 1 MiB: about 1,300 queued requests, a burst like every host of a /22
//     resolving at once after a router restart; in BENCHMARKS.md's open-loop test it
//     roughly halved the requests dropped (from 51-61% to 18-31%). At most 1 MiB of
//     kernel memory per open responder, and only while requests wait.
func DefaultAnnouncerConfig() AnnouncerConfig {
	return AnnouncerConfig{
		GratuitousCount:    3,
		GratuitousInterval: 500 * time.Millisecond,
		RetryInterval:      time.Second,
		ReceiveBuffer:      1 << 20,
		Probe: ProbeConfig{
			Count: 3, Interval: 100 * time.Millisecond,
			Backoff: time.Second, MaxBackoff: 16 * time.Second,
		},
	}
}

// Protocol is how an IP family is resolved on a link.
type Protocol string

// The protocols an Announcer answers.
const (
	ARP Protocol = "arp" // IPv4: Address Resolution Protocol, RFC 826
	NDP Protocol = "ndp" // IPv6: Neighbor Discovery, RFC 4861
)

// protocolOf returns the protocol that resolves ip.
func protocolOf(ip netip.Addr) Protocol {
	if ip.Is4() {
		return ARP
	}
	return NDP
}

// Link is one responder's place: an interface and a protocol. An Announcer opens one
// responder per link that an owned IP needs.
type Link struct {
	Interface string
	Protocol  Protocol
}

// EventKind says what happened to a responder.
type EventKind int

// What can happen to a responder.
const (
	// LinkUp: the responder opened and answers for IPs on the link. Every IP on it was
	// announced.
	LinkUp EventKind = iota + 1
	// LinkFailed: the responder could not open (no such interface, interface down, not
	// Ethernet, no permission) or failed while open (the interface went down or away).
	// Nothing is answered on the link until it opens again; it is retried every
	// RetryInterval while an owned IP needs it. Reported once per distinct error.
	LinkFailed
	// LinkClosed: no owned IP needs the link any more; its responder, if open, was closed, and
	// a failure reported for it no longer matters.
	LinkClosed
	// AddressClaimed: a probed IP (IPs holds it) found nobody else using it; it is answered
	// and announced from now on.
	AddressClaimed
	// AddressConflict: another host (MAC, on Link) uses an owned IP: it is neither answered
	// nor announced, and probed again with backoff. Reported when first seen and when
	// another MAC takes over the address.
	AddressConflict
	// ConflictResolved: a conflicted IP was probed and nobody answered: it is answered and
	// announced from now on.
	ConflictResolved
)

func (k EventKind) String() string {
	switch k {
	case LinkUp:
		return "LinkUp"
	case LinkFailed:
		return "LinkFailed"
	case LinkClosed:
		return "LinkClosed"
	case AddressClaimed:
		return "AddressClaimed"
	case AddressConflict:
		return "AddressConflict"
	case ConflictResolved:
		return "ConflictResolved"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event reports a change of a responder: what happened, on which link, to which owned IPs.
type Event struct {
	Link
	Kind EventKind
	// IPs are the owned IPs that need the link, sorted (for LinkClosed: those it had).
	IPs []netip.Addr
	// Err says why, for LinkFailed.
	Err error
	// MAC is the other host's hardware address, for AddressConflict.
	MAC net.HardwareAddr
}

// LinkStatus is the state of one link that owned IPs need.
type LinkStatus struct {
	Link
	// IPs are the owned IPs that need the link, sorted.
	IPs []netip.Addr
	// Up is true while the responder answers on the link.
	Up bool
	// Err is the last failure while the link is not up, or a failure to join an IPv6
	// solicited-node group while it is (multicast solicitations for that IP may then not
	// reach the responder; unicast ones still do).
	Err error
}

// Counters are a link's packet counts since the Announcer was made. They only grow, also
// across a responder's close and reopen, so they can back Prometheus counters.
type Counters struct {
	// Requests counts valid ARP requests and Neighbor Solicitations received on the link,
	// for any address.
	Requests uint64
	// Replies counts ARP replies and solicited Neighbor Advertisements sent: one per request
	// for an owned IP.
	Replies uint64
	// Gratuitous counts gratuitous ARP frames and unsolicited Neighbor Advertisements sent.
	Gratuitous uint64
	// Probes counts ARP probes and duplicate address detection solicitations sent.
	Probes uint64
	// Conflicts counts ARP announcements and probes from another host for an owned IP
	// (another host claims it: during a failover, briefly, the old owner; otherwise an
	// address conflict).
	Conflicts uint64
	// SendErrors counts frames that could not be sent.
	SendErrors uint64
	// Dropped counts frames the kernel dropped because the responder's receive buffer was
	// full (see ReceiveBuffer): requests that were never answered.
	Dropped uint64
}
