package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// The announcer's side of probing (probe.go is the state machine): SetOwnedProbing starts a
// probe per newly owned address the caller wants checked, holding it out of the answered
// table; Run's loop sends the probes on every link of the address; the responders hand it
// what other hosts say about held addresses; a claimed address joins the table and is
// announced. Probes and their answers are rare (a new Service), so they are built and parsed
// with mdlayher/arp and mdlayher/ndp rather than the allocation-free code of frame.go.

// Hold is an owned address this node does not answer for yet: being probed, or in use by
// another host.
type Hold struct {
	// Conflict is true when another host uses the address; false while it is being probed.
	Conflict bool
	// MAC is the other host's hardware address, and Link where it answered (with Conflict).
	MAC  net.HardwareAddr
	Link Link
	// Since is when the conflict was first seen.
	Since time.Time
}

// probeAnswer is a frame from another host about a held address, from a responder.
type probeAnswer struct {
	ip   netip.Addr
	from mac
	link Link
}

// SetOwnedProbing is SetOwned, with probing: of the IPs owned and not owned before, those
// for which probe returns true are probed first (ProbeConfig), and answered and announced
// only if no other host answers; until then, and while another host uses them, they are
// held (Held). probe nil, or ProbeConfig.Count zero, probes nothing. An IP stays held until
// it is claimed or no longer owned, whatever later calls say.
//
// The caller passes true for addresses the cluster has not announced before, and false when
// the address moves between its own nodes (a failover must not wait for probes, and the old
// owner, if it still answers for a moment, is not a conflict).
func (a *Announcer) SetOwnedProbing(owned map[netip.Addr][]string, probe func(netip.Addr) bool) {
	a.setOwned(owned, probe)
}

// Held returns the owned IPs not answered yet, with why.
func (a *Announcer) Held() map[netip.Addr]Hold {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[netip.Addr]Hold{}
	for ip, p := range a.probes {
		if !p.held() {
			continue
		}
		h := Hold{Conflict: p.phase == conflicted}
		if h.Conflict {
			h.MAC, h.Link, h.Since = slices.Clone(net.HardwareAddr(p.by[:])), a.probeLinks[ip], p.since
		}
		out[ip] = h
	}
	return out
}

// startProbes, with a.mu held, starts probing the IPs of next that were not owned and that
// probe selects, and forgets the probes of IPs no longer owned.
func (a *Announcer) startProbes(next ownedTable, probe func(netip.Addr) bool, now time.Time) {
	for ip := range a.probes {
		if next[ip] == nil {
			delete(a.probes, ip)
			delete(a.probeLinks, ip)
		}
	}
	if probe == nil || a.cfg.Probe.Count <= 0 {
		return
	}
	for ip := range next {
		if a.owned[ip] == nil && a.probes[ip] == nil && probe(ip) {
			a.probes[ip] = newProbe(a.cfg.Probe, now)
		}
	}
}

// answered, with a.mu held, returns next without the held IPs: what responders answer.
func (a *Announcer) answeredOf(next ownedTable) ownedTable {
	if len(a.probes) == 0 {
		return next
	}
	t := make(ownedTable, len(next))
	for ip, names := range next {
		if p := a.probes[ip]; p == nil || !p.held() {
			t[ip] = names
		}
	}
	return t
}

// publishHeld, with a.mu held, stores the answered table and the held set the responders read.
func (a *Announcer) publishHeld() {
	t := a.answeredOf(a.owned)
	a.table.Store(&t)
	held := map[netip.Addr]bool{}
	for ip, p := range a.probes {
		if p.held() {
			held[ip] = true
		}
	}
	a.holding.Store(&held)
}

// holdsAny reports whether any IP is held: only then do responders look at other frames.
func (a *Announcer) holdsAny() bool { return len(*a.holding.Load()) > 0 }

// isHeld reports whether ip is held: responders pass what other hosts say about it to the loop.
func (a *Announcer) isHeld(ip netip.Addr) bool { return (*a.holding.Load())[ip] }

// tellHeld passes a frame from another host about a held IP to the loop, unless it comes
// from this cluster (AnnouncerConfig.Ours). It never blocks: if the loop is behind, the next
// probe's answer will do.
func (r *responder) tellHeld(ip netip.Addr, from mac) {
	if from == r.mac || (r.a.cfg.Ours != nil && r.a.cfg.Ours(net.HardwareAddr(from[:]))) {
		return
	}
	select {
	case r.a.heard <- probeAnswer{ip: ip, from: from, link: r.link}:
	default:
	}
}

// stepProbes sends the probes that are due and claims the addresses whose round ended in
// silence: they join the answered table and are announced.
func (l *loop) stepProbes(now time.Time) {
	a := l.a
	a.mu.Lock()
	var send, claimed []netip.Addr
	var resolved map[netip.Addr]bool
	for ip, p := range a.probes {
		wasConflict := p.phase == conflicted
		s, out := p.tick(now)
		if s {
			send = append(send, ip)
		}
		if out == becameClaimed {
			claimed = append(claimed, ip)
			if wasConflict {
				if resolved == nil {
					resolved = map[netip.Addr]bool{}
				}
				resolved[ip] = true
			}
			delete(a.probes, ip)
			delete(a.probeLinks, ip)
		}
	}
	owned := a.owned
	if len(claimed) > 0 {
		a.publishHeld()
	}
	a.mu.Unlock()

	for _, ip := range send {
		for _, n := range owned[ip] {
			if ls := l.links[Link{Interface: n, Protocol: protocolOf(ip)}]; ls != nil && ls.r != nil {
				ls.r.probe(ip)
			}
		}
	}
	slices.SortFunc(claimed, netip.Addr.Compare)
	for _, ip := range claimed {
		k := Link{Protocol: protocolOf(ip)}
		for _, n := range owned[ip] {
			k.Interface = n
			if ls := l.links[k]; ls != nil && ls.r != nil {
				l.startBurst(k, ip, now)
			}
		}
		kind := AddressClaimed
		if resolved[ip] {
			kind = ConflictResolved
			a.log.Info("address no longer in use by another host: announcing it", "ip", ip)
		} else {
			a.log.Debug("probed: nobody else uses the address", "ip", ip)
		}
		l.emit(Event{Link: k, Kind: kind, IPs: []netip.Addr{ip}})
	}
}

// probeAnswered records that another host uses a held IP.
func (l *loop) probeAnswered(ans probeAnswer, now time.Time) {
	a := l.a
	a.mu.Lock()
	p := a.probes[ans.ip]
	out := noChange
	if p != nil {
		out = p.answer(ans.from, now)
		if out == becameConflicted {
			a.probeLinks[ans.ip] = ans.link
		}
	}
	a.mu.Unlock()
	if out != becameConflicted {
		return
	}
	a.log.Warn("address in use by another host: not announcing it", "ip", ans.ip, "mac", ans.from.String(), "interface", ans.link.Interface, "protocol", ans.link.Protocol)
	l.emit(Event{Link: ans.link, Kind: AddressConflict, IPs: []netip.Addr{ans.ip}, MAC: slices.Clone(net.HardwareAddr(ans.from[:]))})
}

// nextProbe returns when stepProbes must next run.
func (a *Announcer) nextProbe() (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var next time.Time
	for _, p := range a.probes {
		if p.held() && (next.IsZero() || p.due.Before(next)) {
			next = p.due
		}
	}
	return next, !next.IsZero()
}

// probe sends one probe for ip on r's link.
func (r *responder) probe(ip netip.Addr) {
	frame, err := probeFrame(r.mac, ip)
	if err != nil {
		r.c.sendErrors.Add(1)
		r.a.log.Debug("cannot build a probe", "ip", ip, "err", err)
		return
	}
	var to mac
	copy(to[:], frame[:6])
	r.send(frame, to, r.gdst, &r.c.probes)
}

// probeFrame builds the probe of ip from ours: for IPv4 an ARP Probe (RFC 5227 section 2.1.1:
// a broadcast request with sender IP 0.0.0.0 and target hardware address zero), for IPv6 a
// duplicate address detection Neighbor Solicitation (RFC 4862 section 5.4.2: from :: to the
// solicited-node group of ip, hop limit 255, no source link-layer address option).
func probeFrame(ours mac, ip netip.Addr) ([]byte, error) {
	src := net.HardwareAddr(ours[:])
	if ip.Is4() {
		p, err := arp.NewPacket(arp.OperationRequest, src, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), ip)
		if err != nil {
			return nil, fmt.Errorf("building an ARP probe of %s: %w", ip, err)
		}
		body, err := p.MarshalBinary()
		if err != nil {
			return nil, err
		}
		f := ethernet.Frame{Destination: ethernet.Broadcast, Source: src, EtherType: ethernet.EtherTypeARP, Payload: body}
		return f.MarshalBinary()
	}
	dst := solicitedNode(ip)
	icmp, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: ip}, netip.IPv6Unspecified(), dst)
	if err != nil {
		return nil, fmt.Errorf("building a Neighbor Solicitation probe of %s: %w", ip, err)
	}
	b := make([]byte, 0, ipv6HeaderLen+len(icmp))
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(icmp)))
	b = append(b, protoICMPv6, ndpHopLimit)
	s, d := netip.IPv6Unspecified().As16(), dst.As16()
	b = append(append(append(b, s[:]...), d[:]...), icmp...)
	dmac := multicastMAC(dst)
	f := ethernet.Frame{Destination: net.HardwareAddr(dmac[:]), Source: src, EtherType: ethernet.EtherTypeIPv6, Payload: b}
	return f.MarshalBinary()
}

// heldARP looks at an ARP frame that is not a request for an answered IP and tells the loop
// if another host uses a held IP (RFC 5227 section 2.1.1): any ARP packet whose sender IP is
// the held address (an answer to our probe, an announcement, the host resolving someone), or
// another host's probe of it.
func (r *responder) heldARP(frame []byte) {
	var p arp.Packet
	if len(frame) < ethHeaderLen || p.UnmarshalBinary(frame[ethHeaderLen:]) != nil || len(p.SenderHardwareAddr) != 6 {
		return
	}
	from := mac(p.SenderHardwareAddr)
	switch {
	case p.SenderIP.Is4() && r.a.isHeld(p.SenderIP):
		r.tellHeld(p.SenderIP, from)
	case p.Operation == arp.OperationRequest && p.SenderIP == netip.IPv4Unspecified() && r.a.isHeld(p.TargetIP):
		r.tellHeld(p.TargetIP, from)
	}
}

// heldNDP looks at an IPv6 frame that is not a solicitation for an answered IP and tells the
// loop if another host uses a held IP (RFC 4862 section 5.4.3 and 5.4.4): a Neighbor
// Advertisement of it, or another host's duplicate address detection of it.
func (r *responder) heldNDP(frame []byte, parsed *solicitation, parseErr error) {
	if parseErr == nil {
		if parsed.src.IsUnspecified() && r.a.isHeld(parsed.target) {
			r.tellHeld(parsed.target, parsed.ethSrc)
		}
		return
	}
	if !errors.Is(parseErr, errNotNS) || len(frame) < ethHeaderLen+ipv6HeaderLen+4 {
		return
	}
	ip := frame[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if ip[6] != protoICMPv6 || ip[7] != ndpHopLimit || ip[40] != icmpTypeNA || ipv6HeaderLen+plen > len(ip) {
		return
	}
	m, err := ndp.ParseMessage(ip[ipv6HeaderLen : ipv6HeaderLen+plen])
	na, ok := m.(*ndp.NeighborAdvertisement)
	if err != nil || !ok || !r.a.isHeld(na.TargetAddress) {
		return
	}
	from := mac(frame[6:12])
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target && len(lla.Addr) == 6 {
			from = mac(lla.Addr)
		}
	}
	r.tellHeld(na.TargetAddress, from)
}
