package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// This file parses and builds the Ethernet frames the responders handle: ARP over Ethernet
// for IPv4 (RFC 826) and Neighbor Solicitations and Advertisements in IPv6 (RFC 4861). It is
// pure and does not allocate for valid input (builders append to the caller's buffer), so a
// responder answers without garbage. fuzz_test.go checks it against github.com/mdlayher/arp and
// github.com/mdlayher/ndp, which are the reference, not the hot path: arp.Client needs an
// IPv4 address on the interface, ndp.Conn a raw ICMPv6 socket that the kernel does not feed
// unicast probes for addresses it does not own, and both allocate per packet.

// mac is an Ethernet address.
type mac [6]byte

func (m mac) String() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return string(b)
}

// multicast reports whether m is a group (multicast or broadcast) address.
func (m mac) multicast() bool { return m[0]&1 == 1 }

var (
	broadcastMAC = mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// allNodes is ff02::1, where unsolicited Neighbor Advertisements go.
	allNodes = netip.MustParseAddr("ff02::1")
)

// multicastMAC is the Ethernet address an IPv6 multicast address maps to (RFC 2464
// section 7): 33:33 and the address's last 4 bytes.
func multicastMAC(ip netip.Addr) mac {
	a := ip.As16()
	return mac{0x33, 0x33, a[12], a[13], a[14], a[15]}
}

// solicitedNode is the solicited-node multicast address of ip (RFC 4291 section 2.7.1):
// ff02::1:ff00:0/104 and ip's last 3 bytes. Multicast solicitations for ip go there.
func solicitedNode(ip netip.Addr) netip.Addr {
	a := ip.As16()
	return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
}

const (
	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd

	ethHeaderLen  = 14
	arpLen        = 28 // ARP for Ethernet and IPv4
	ipv6HeaderLen = 40
	// minFrameLen is the shortest Ethernet frame without its FCS. Built frames are padded to
	// it: most NICs pad short frames themselves, not all do, and switches drop runts.
	minFrameLen = 60

	arpRequest = 1
	arpReply   = 2

	protoICMPv6  = 58
	ndpHopLimit  = 255
	icmpTypeNS   = 135
	icmpTypeNA   = 136
	nsLen        = 24 // ICMPv6 header, reserved, target
	optSourceLLA = 1
	optTargetLLA = 2
	naFlagSolic  = 0x40
	naFlagOverr  = 0x20
)

// Parse errors. The responders count and drop what fails to parse; tests check which error.
var (
	errShort     = errors.New("frame too short")
	errEtherType = errors.New("not the expected EtherType")
	errNotARPv4  = errors.New("not ARP for Ethernet and IPv4")
	errNotReq    = errors.New("not an ARP request")
	errBadSender = errors.New("multicast sender address")
	errNotNS     = errors.New("not an ICMPv6 Neighbor Solicitation")
	errInvalidNS = errors.New("invalid Neighbor Solicitation")
)

// arpPacket is an ARP packet for Ethernet and IPv4 and the Ethernet addresses around it.
type arpPacket struct {
	ethDst, ethSrc mac
	op             uint16
	senderMAC      mac
	senderIP       netip.Addr
	targetMAC      mac
	targetIP       netip.Addr
}

// parseARPRequest parses an Ethernet frame holding an ARP request for an IPv4 address.
// Trailing bytes (padding) are ignored.
func parseARPRequest(b []byte) (arpPacket, error) {
	var p arpPacket
	if len(b) < ethHeaderLen+arpLen {
		return p, fmt.Errorf("ARP request of %d bytes: %w", len(b), errShort)
	}
	if t := binary.BigEndian.Uint16(b[12:14]); t != etherTypeARP {
		return p, fmt.Errorf("EtherType %#04x: %w", t, errEtherType)
	}
	a := b[ethHeaderLen:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != etherTypeIPv4 || a[4] != 6 || a[5] != 4 {
		return p, fmt.Errorf("hardware type %d, protocol %#04x, lengths %d/%d: %w",
			binary.BigEndian.Uint16(a[0:2]), binary.BigEndian.Uint16(a[2:4]), a[4], a[5], errNotARPv4)
	}
	p.op = binary.BigEndian.Uint16(a[6:8])
	if p.op != arpRequest {
		return p, fmt.Errorf("operation %d: %w", p.op, errNotReq)
	}
	copy(p.ethDst[:], b[0:6])
	copy(p.ethSrc[:], b[6:12])
	copy(p.senderMAC[:], a[8:14])
	p.senderIP = netip.AddrFrom4([4]byte(a[14:18]))
	copy(p.targetMAC[:], a[18:24])
	p.targetIP = netip.AddrFrom4([4]byte(a[24:28]))
	if p.ethSrc.multicast() || p.senderMAC.multicast() {
		return p, fmt.Errorf("sender %s/%s: %w", p.ethSrc, p.senderMAC, errBadSender)
	}
	return p, nil
}

// appendARP appends p as an Ethernet frame to b, padded to the minimum frame length. p's
// addresses must be IPv4.
func appendARP(b []byte, p *arpPacket) []byte {
	start := len(b)
	b = append(b, p.ethDst[:]...)
	b = append(b, p.ethSrc[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeARP)
	b = append(b, 0, 1, etherTypeIPv4>>8, etherTypeIPv4&0xff, 6, 4)
	b = binary.BigEndian.AppendUint16(b, p.op)
	b = append(b, p.senderMAC[:]...)
	s := p.senderIP.As4()
	b = append(b, s[:]...)
	b = append(b, p.targetMAC[:]...)
	t := p.targetIP.As4()
	b = append(b, t[:]...)
	return pad(b, start)
}

// arpReplyTo is the reply that announces ours as the address of req's target IP, sent to
// whoever asked: like Linux, to the sender hardware address of the request.
func arpReplyTo(req *arpPacket, ours mac) arpPacket {
	return arpPacket{
		ethDst: req.senderMAC, ethSrc: ours,
		op:        arpReply,
		senderMAC: ours, senderIP: req.targetIP,
		targetMAC: req.senderMAC, targetIP: req.senderIP,
	}
}

// gratuitousARP is the gratuitous ARP of ip at ours, broadcast, with operation op.
//
// Both forms have sender and target IP equal to ip, which is what makes them gratuitous to
// Linux (arp_is_garp in net/ipv4/arp.c) and lets them override an existing neighbour entry
// at once instead of after its locktime. The request form is RFC 5227's ARP Announcement
// (target hardware address zero). Linux accepts a gratuitous reply only if its target
// hardware address equals its sender's, so the reply form carries ours there (not the
// broadcast address some implementations put in it).
func gratuitousARP(op uint16, ours mac, ip netip.Addr) arpPacket {
	p := arpPacket{
		ethDst: broadcastMAC, ethSrc: ours,
		op:        op,
		senderMAC: ours, senderIP: ip,
		targetIP: ip,
	}
	if op == arpReply {
		p.targetMAC = ours
	}
	return p
}

// solicitation is a Neighbor Solicitation with its IPv6 and Ethernet addresses.
type solicitation struct {
	ethDst, ethSrc mac
	src, dst       netip.Addr // IPv6 source (:: during DAD) and destination
	target         netip.Addr
	sourceLLA      mac  // the Source Link-Layer Address option
	hasSourceLLA   bool // whether the option is present
}

// parseSolicitation parses an Ethernet frame holding an IPv6 Neighbor Solicitation and
// validates it as RFC 4861 section 7.1.1 asks: hop limit 255, a correct ICMPv6 checksum,
// code 0, at least 24 bytes of ICMPv6, a unicast target, options of non-zero length that
// fit, and, from the unspecified address, a solicited-node destination and no source
// link-layer address. Extension headers are not supported (the packet is rejected); bytes
// after the IPv6 payload (padding) are ignored.
func parseSolicitation(b []byte) (solicitation, error) {
	var s solicitation
	if len(b) < ethHeaderLen+ipv6HeaderLen+nsLen {
		return s, fmt.Errorf("solicitation of %d bytes: %w", len(b), errShort)
	}
	if t := binary.BigEndian.Uint16(b[12:14]); t != etherTypeIPv6 {
		return s, fmt.Errorf("EtherType %#04x: %w", t, errEtherType)
	}
	ip := b[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[40] != icmpTypeNS {
		return s, fmt.Errorf("IP version %d, next header %d, ICMPv6 type %d: %w", ip[0]>>4, ip[6], ip[40], errNotNS)
	}
	if ip[7] != ndpHopLimit || ip[41] != 0 || plen < nsLen || ipv6HeaderLen+plen > len(ip) {
		return s, fmt.Errorf("hop limit %d, code %d, payload %d of %d bytes: %w",
			ip[7], ip[41], plen, len(ip)-ipv6HeaderLen, errInvalidNS)
	}
	s.src = netip.AddrFrom16([16]byte(ip[8:24]))
	s.dst = netip.AddrFrom16([16]byte(ip[24:40]))
	icmp := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	if c := icmpv6Checksum(s.src, s.dst, icmp); c != 0 {
		return s, fmt.Errorf("bad ICMPv6 checksum (residue %#04x): %w", c, errInvalidNS)
	}
	s.target = netip.AddrFrom16([16]byte(icmp[8:24]))
	if s.target.IsMulticast() {
		return s, fmt.Errorf("multicast target %s: %w", s.target, errInvalidNS)
	}
	for opts := icmp[nsLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return s, fmt.Errorf("malformed option: %w", errInvalidNS)
		}
		n := int(opts[1]) * 8
		if opts[0] == optSourceLLA && n == 8 {
			s.sourceLLA, s.hasSourceLLA = mac(opts[2:8]), true
		}
		opts = opts[n:]
	}
	if s.src.IsUnspecified() && (s.dst != solicitedNode(s.target) || s.hasSourceLLA) {
		return s, fmt.Errorf("from :: to %s with source link-layer address %v: %w", s.dst, s.hasSourceLLA, errInvalidNS)
	}
	copy(s.ethDst[:], b[0:6])
	copy(s.ethSrc[:], b[6:12])
	if s.ethSrc.multicast() {
		return s, fmt.Errorf("source %s: %w", s.ethSrc, errBadSender)
	}
	return s, nil
}

// advertisement is a Neighbor Advertisement for target at ours with the Override flag, and
// its IPv6 and Ethernet addresses.
type advertisement struct {
	ethDst, ours mac
	src, dst     netip.Addr
	target       netip.Addr
	solicited    bool
}

// advertisementFor is the answer to s for target at ours, sent from src (the interface's
// link-local address, or the target itself when there is none): to the solicitation's
// source, with the Solicited flag; to all nodes without it when the source is unspecified
// (duplicate address detection, RFC 4861 section 7.2.4). The Ethernet destination is the
// Source Link-Layer Address option, else the frame's source.
func advertisementFor(s *solicitation, ours mac, src netip.Addr) advertisement {
	a := advertisement{ethDst: s.ethSrc, ours: ours, src: src, dst: s.src, target: s.target, solicited: true}
	switch {
	case s.src.IsUnspecified():
		a.ethDst, a.dst, a.solicited = multicastMAC(allNodes), allNodes, false
	case s.hasSourceLLA:
		a.ethDst = s.sourceLLA
	}
	return a
}

// unsolicitedNA is the advertisement that tells all nodes target is at ours (RFC 4861
// section 7.2.6), with Override so that neighbours replace the address they had.
func unsolicitedNA(ours mac, src, target netip.Addr) advertisement {
	return advertisement{ethDst: multicastMAC(allNodes), ours: ours, src: src, dst: allNodes, target: target}
}

// appendAdvertisement appends a as an Ethernet frame to b: IPv6 with hop limit 255, an
// ICMPv6 Neighbor Advertisement with the Override flag (and Solicited if a says so) and a
// Target Link-Layer Address option.
func appendAdvertisement(b []byte, a *advertisement) []byte {
	const plen = nsLen + 8
	start := len(b)
	b = append(b, a.ethDst[:]...)
	b = append(b, a.ours[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeIPv6)
	b = append(b, 0x60, 0, 0, 0) // version 6, traffic class 0, flow label 0
	b = binary.BigEndian.AppendUint16(b, plen)
	b = append(b, protoICMPv6, ndpHopLimit)
	src, dst, target := a.src.As16(), a.dst.As16(), a.target.As16()
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	icmp := len(b)
	flags := byte(naFlagOverr)
	if a.solicited {
		flags |= naFlagSolic
	}
	b = append(b, icmpTypeNA, 0, 0, 0, flags, 0, 0, 0)
	b = append(b, target[:]...)
	b = append(b, optTargetLLA, 1)
	b = append(b, a.ours[:]...)
	binary.BigEndian.PutUint16(b[icmp+2:], icmpv6Checksum(a.src, a.dst, b[icmp:]))
	return pad(b, start)
}

// icmpv6Checksum is the Internet checksum (RFC 1071) of an ICMPv6 message with the IPv6
// pseudo-header (RFC 8200 section 8.1). Over a message whose checksum field is zero it is
// the value to put there; over a message with a correct checksum it is zero.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	s, d := src.As16(), dst.As16()
	for i := 0; i < 16; i += 2 {
		sum += uint32(s[i])<<8 | uint32(s[i+1])
		sum += uint32(d[i])<<8 | uint32(d[i+1])
	}
	sum += uint32(len(msg)>>16) + uint32(len(msg)&0xffff) + protoICMPv6
	for len(msg) >= 2 {
		sum += uint32(msg[0])<<8 | uint32(msg[1])
		msg = msg[2:]
	}
	if len(msg) == 1 {
		sum += uint32(msg[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pad zero-pads the frame that starts at b[start] to the minimum Ethernet frame length.
func pad(b []byte, start int) []byte {
	for len(b)-start < minFrameLen {
		b = append(b, 0)
	}
	return b
}
