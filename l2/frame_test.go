package l2

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	macA      = mac{0x02, 0, 0, 0, 0, 0x0a}
	macClient = mac{0x02, 0, 0, 0, 0, 0xcc}
	ip4Owned  = netip.MustParseAddr("198.51.100.200")
	ip4Client = netip.MustParseAddr("198.51.100.2")
	ip6Owned  = netip.MustParseAddr("2001:db8:100::200")
	ip6Client = netip.MustParseAddr("2001:db8:100::2")
	llA       = netip.MustParseAddr("fe80::a")
)

// cmpOpts compares the package's frame structs, which have unexported fields.
var cmpOpts = cmp.Options{
	cmp.AllowUnexported(arpPacket{}, solicitation{}, advertisement{}),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func arpRequestFrame() []byte {
	return appendARP(nil, &arpPacket{
		ethDst: broadcastMAC, ethSrc: macClient, op: arpRequest,
		senderMAC: macClient, senderIP: ip4Client, targetIP: ip4Owned,
	})
}

func TestParseARPRequest(t *testing.T) {
	want := arpPacket{
		ethDst: broadcastMAC, ethSrc: macClient, op: arpRequest,
		senderMAC: macClient, senderIP: ip4Client, targetIP: ip4Owned,
	}
	for _, tc := range []struct {
		name    string
		edit    func([]byte) []byte
		wantErr error
	}{
		{name: "a request padded to 60 bytes", edit: func(b []byte) []byte { return b }},
		{name: "a request without padding (42 bytes, as captured on the sender)", edit: func(b []byte) []byte { return b[:42] }},
		{name: "a request with trailing bytes beyond the padding", edit: func(b []byte) []byte { return append(b, 1, 2, 3) }},
		{name: "one byte short", edit: func(b []byte) []byte { return b[:41] }, wantErr: errShort},
		{name: "empty", edit: func(b []byte) []byte { return nil }, wantErr: errShort},
		{name: "an IPv4 EtherType", edit: func(b []byte) []byte { b[12], b[13] = 0x08, 0x00; return b }, wantErr: errEtherType},
		{name: "a VLAN tag (the VLAN interface answers, not its parent)", edit: func(b []byte) []byte { b[12], b[13] = 0x81, 0x00; return b }, wantErr: errEtherType},
		{name: "a reply", edit: func(b []byte) []byte { b[21] = arpReply; return b }, wantErr: errNotReq},
		{name: "RARP operation 3", edit: func(b []byte) []byte { b[21] = 3; return b }, wantErr: errNotReq},
		{name: "hardware type IEEE 802", edit: func(b []byte) []byte { b[15] = 6; return b }, wantErr: errNotARPv4},
		{name: "protocol IPv6", edit: func(b []byte) []byte { b[16], b[17] = 0x86, 0xdd; return b }, wantErr: errNotARPv4},
		{name: "hardware length 8", edit: func(b []byte) []byte { b[18] = 8; return b }, wantErr: errNotARPv4},
		{name: "protocol length 16", edit: func(b []byte) []byte { b[19] = 16; return b }, wantErr: errNotARPv4},
		{name: "a broadcast Ethernet source", edit: func(b []byte) []byte { copy(b[6:12], broadcastMAC[:]); return b }, wantErr: errBadSender},
		{name: "a multicast sender hardware address", edit: func(b []byte) []byte { b[22] = 0x01; return b }, wantErr: errBadSender},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseARPRequest(tc.edit(arpRequestFrame()))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("packet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseARPProbe(t *testing.T) {
	// An RFC 5227 probe (sender IP 0.0.0.0) for an owned address is answered like any
	// request: the owner defends its address.
	b := appendARP(nil, &arpPacket{ethDst: broadcastMAC, ethSrc: macClient, op: arpRequest,
		senderMAC: macClient, senderIP: netip.IPv4Unspecified(), targetIP: ip4Owned})
	req, err := parseARPRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	r := arpReplyTo(&req, macA)
	if r.ethDst != macClient || r.targetIP != netip.IPv4Unspecified() || r.senderIP != ip4Owned {
		t.Errorf("reply to a probe: %+v", r)
	}
}

// decodeARP parses a built frame with mdlayher/ethernet and mdlayher/arp.
func decodeARP(t *testing.T, b []byte) (*ethernet.Frame, *arp.Packet) {
	t.Helper()
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatalf("ethernet: %v", err)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatalf("arp: %v", err)
	}
	return &f, &p
}

func TestARPReply(t *testing.T) {
	req, err := parseARPRequest(arpRequestFrame())
	if err != nil {
		t.Fatal(err)
	}
	reply := arpReplyTo(&req, macA)
	b := appendARP(nil, &reply)
	if len(b) != minFrameLen {
		t.Errorf("frame of %d bytes, want %d", len(b), minFrameLen)
	}
	f, p := decodeARP(t, b)
	want := arp.Packet{HardwareType: 1, ProtocolType: etherTypeIPv4, HardwareAddrLength: 6, IPLength: 4,
		Operation:          arp.OperationReply,
		SenderHardwareAddr: macA[:], SenderIP: ip4Owned,
		TargetHardwareAddr: macClient[:], TargetIP: ip4Client}
	if diff := cmp.Diff(want, *p, cmpOpts); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
	if !equalMAC(f.Destination, macClient) || !equalMAC(f.Source, macA) || f.EtherType != ethernet.EtherTypeARP {
		t.Errorf("Ethernet header %s -> %s type %v", f.Source, f.Destination, f.EtherType)
	}
}

func TestGratuitousARP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		op         uint16
		wantOp     arp.Operation
		wantTarget mac
	}{
		{"request form (RFC 5227 announcement): target hardware address zero", arpRequest, arp.OperationRequest, mac{}},
		{"reply form: target hardware address ours, as Linux requires", arpReply, arp.OperationReply, macA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := gratuitousARP(tc.op, macA, ip4Owned)
			f, p := decodeARP(t, appendARP(nil, &g))
			if !equalMAC(f.Destination, broadcastMAC) || !equalMAC(f.Source, macA) {
				t.Errorf("Ethernet %s -> %s, want %s -> broadcast", f.Source, f.Destination, macA)
			}
			if p.Operation != tc.wantOp || p.SenderIP != ip4Owned || p.TargetIP != ip4Owned ||
				!equalMAC(p.SenderHardwareAddr, macA) || !equalMAC(p.TargetHardwareAddr, tc.wantTarget) {
				t.Errorf("got %+v", p)
			}
		})
	}
}

// solicitationFrame builds an Ethernet frame with a Neighbor Solicitation: what a client
// sends, and what tests send to the responder. sllao nil leaves the option out.
func solicitationFrame(ethDst, ethSrc mac, src, dst, target netip.Addr, sllao *mac) []byte {
	body := []byte{icmpTypeNS, 0, 0, 0, 0, 0, 0, 0}
	t := target.As16()
	body = append(body, t[:]...)
	if sllao != nil {
		body = append(body, optSourceLLA, 1)
		body = append(body, sllao[:]...)
	}
	return ipv6Frame(ethDst, ethSrc, src, dst, ndpHopLimit, body)
}

// ipv6Frame wraps an ICMPv6 message (its checksum field is filled in) in IPv6 and Ethernet.
func ipv6Frame(ethDst, ethSrc mac, src, dst netip.Addr, hopLimit byte, icmp []byte) []byte {
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint16(icmp[2:], icmpv6Checksum(src, dst, icmp))
	b := append(ethDst[:], ethSrc[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeIPv6)
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(icmp)))
	b = append(b, protoICMPv6, hopLimit)
	s, d := src.As16(), dst.As16()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	return append(b, icmp...)
}

func TestParseSolicitation(t *testing.T) {
	snm := solicitedNode(ip6Owned)
	multicastNS := func() []byte {
		return solicitationFrame(multicastMAC(snm), macClient, ip6Client, snm, ip6Owned, &macClient)
	}
	for _, tc := range []struct {
		name    string
		frame   func() []byte
		want    solicitation
		wantErr error
	}{
		{name: "multicast solicitation to the solicited-node address",
			frame: multicastNS,
			want: solicitation{ethDst: multicastMAC(snm), ethSrc: macClient, src: ip6Client, dst: snm, target: ip6Owned,
				sourceLLA: macClient, hasSourceLLA: true}},
		{name: "unicast NUD probe: to the owned address and our MAC, no source link-layer option",
			frame: func() []byte { return solicitationFrame(macA, macClient, ip6Client, ip6Owned, ip6Owned, nil) },
			want:  solicitation{ethDst: macA, ethSrc: macClient, src: ip6Client, dst: ip6Owned, target: ip6Owned}},
		{name: "duplicate address detection from ::",
			frame: func() []byte {
				return solicitationFrame(multicastMAC(snm), macClient, netip.IPv6Unspecified(), snm, ip6Owned, nil)
			},
			want: solicitation{ethDst: multicastMAC(snm), ethSrc: macClient, src: netip.IPv6Unspecified(), dst: snm, target: ip6Owned}},
		{name: "padding after the IPv6 payload is ignored",
			frame: func() []byte { return append(multicastNS(), 0, 0, 0, 0) },
			want: solicitation{ethDst: multicastMAC(snm), ethSrc: macClient, src: ip6Client, dst: snm, target: ip6Owned,
				sourceLLA: macClient, hasSourceLLA: true}},
		{name: "an unknown option is skipped",
			frame: func() []byte {
				b := solicitationFrame(macA, macClient, ip6Client, ip6Owned, ip6Owned, nil)
				icmp := append(b[54:], 200, 1, 0, 0, 0, 0, 0, 0)
				return ipv6Frame(macA, macClient, ip6Client, ip6Owned, 255, icmp)
			},
			want: solicitation{ethDst: macA, ethSrc: macClient, src: ip6Client, dst: ip6Owned, target: ip6Owned}},
		{name: "too short", frame: func() []byte { return multicastNS()[:77] }, wantErr: errShort},
		{name: "payload length beyond the frame",
			frame: func() []byte { return multicastNS()[:80] }, wantErr: errInvalidNS},
		{name: "an ARP EtherType", frame: func() []byte { b := multicastNS(); b[12], b[13] = 0x08, 0x06; return b }, wantErr: errEtherType},
		{name: "IP version 4 in an IPv6 EtherType", frame: func() []byte { b := multicastNS(); b[14] = 0x45; return b }, wantErr: errNotNS},
		{name: "an extension header before ICMPv6", frame: func() []byte { b := multicastNS(); b[20] = 0; return b }, wantErr: errNotNS},
		{name: "a Neighbor Advertisement",
			frame: func() []byte {
				b := multicastNS()
				return ipv6Frame(multicastMAC(snm), macClient, ip6Client, snm, 255, append([]byte{icmpTypeNA}, b[55:]...))
			}, wantErr: errNotNS},
		{name: "hop limit 254 (routed, so not from the link)",
			frame: func() []byte { b := multicastNS(); b[21] = 254; return b }, wantErr: errInvalidNS},
		{name: "ICMPv6 code 1",
			frame: func() []byte {
				b := multicastNS()
				b[55] = 1
				return ipv6Frame(multicastMAC(snm), macClient, ip6Client, snm, 255, b[54:])
			}, wantErr: errInvalidNS},
		{name: "a bad checksum", frame: func() []byte { b := multicastNS(); b[56] ^= 0xff; return b }, wantErr: errInvalidNS},
		{name: "a corrupted target", frame: func() []byte { b := multicastNS(); b[77] ^= 1; return b }, wantErr: errInvalidNS},
		{name: "a multicast target",
			frame: func() []byte {
				return solicitationFrame(multicastMAC(snm), macClient, ip6Client, snm, netip.MustParseAddr("ff02::1"), nil)
			}, wantErr: errInvalidNS},
		{name: "an option of length zero",
			frame: func() []byte {
				b := multicastNS()
				b[79] = 0
				return ipv6Frame(multicastMAC(snm), macClient, ip6Client, snm, 255, b[54:])
			}, wantErr: errInvalidNS},
		{name: "an option longer than the message",
			frame: func() []byte {
				b := multicastNS()
				b[79] = 2
				return ipv6Frame(multicastMAC(snm), macClient, ip6Client, snm, 255, b[54:])
			}, wantErr: errInvalidNS},
		{name: "duplicate address detection with a source link-layer option",
			frame: func() []byte {
				return solicitationFrame(multicastMAC(snm), macClient, netip.IPv6Unspecified(), snm, ip6Owned, &macClient)
			}, wantErr: errInvalidNS},
		{name: "duplicate address detection to the target itself",
			frame: func() []byte {
				return solicitationFrame(macA, macClient, netip.IPv6Unspecified(), ip6Owned, ip6Owned, nil)
			}, wantErr: errInvalidNS},
		{name: "a multicast Ethernet source",
			frame: func() []byte {
				return solicitationFrame(multicastMAC(snm), multicastMAC(snm), ip6Client, snm, ip6Owned, nil)
			}, wantErr: errBadSender},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSolicitation(tc.frame())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("solicitation (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAdvertisementFor(t *testing.T) {
	snm := solicitedNode(ip6Owned)
	other := mac{0x02, 0, 0, 0, 0, 0xdd}
	for _, tc := range []struct {
		name string
		ns   solicitation
		want advertisement
	}{
		{name: "a multicast solicitation is answered to its source link-layer address, solicited",
			ns:   solicitation{ethSrc: other, src: ip6Client, dst: snm, target: ip6Owned, sourceLLA: macClient, hasSourceLLA: true},
			want: advertisement{ethDst: macClient, ours: macA, src: llA, dst: ip6Client, target: ip6Owned, solicited: true}},
		{name: "a NUD probe without the option is answered to the frame's source, solicited",
			ns:   solicitation{ethSrc: macClient, src: ip6Client, dst: ip6Owned, target: ip6Owned},
			want: advertisement{ethDst: macClient, ours: macA, src: llA, dst: ip6Client, target: ip6Owned, solicited: true}},
		{name: "duplicate address detection is answered to all nodes, not solicited",
			ns:   solicitation{ethSrc: macClient, src: netip.IPv6Unspecified(), dst: snm, target: ip6Owned},
			want: advertisement{ethDst: mac{0x33, 0x33, 0, 0, 0, 1}, ours: macA, src: llA, dst: allNodes, target: ip6Owned}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, advertisementFor(&tc.ns, macA, llA), cmpOpts); diff != "" {
				t.Errorf("advertisement (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAppendAdvertisement checks built advertisements against mdlayher/ndp, byte for byte.
func TestAppendAdvertisement(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    advertisement
	}{
		{"solicited", advertisement{ethDst: macClient, ours: macA, src: llA, dst: ip6Client, target: ip6Owned, solicited: true}},
		{"unsolicited", unsolicitedNA(macA, llA, ip6Owned)},
		{"unsolicited from the target itself", unsolicitedNA(macA, ip6Owned, ip6Owned)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendAdvertisement(nil, &tc.a)
			want, err := ndp.MarshalMessageChecksum(&ndp.NeighborAdvertisement{
				Solicited: tc.a.solicited, Override: true, TargetAddress: tc.a.target,
				Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: macA[:]}},
			}, tc.a.src, tc.a.dst)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, b[54:]); diff != "" {
				t.Errorf("ICMPv6 message (-ndp +ours):\n%s", diff)
			}
			if !equalMAC(b[0:6], tc.a.ethDst) || !equalMAC(b[6:12], macA) || binary.BigEndian.Uint16(b[12:14]) != etherTypeIPv6 {
				t.Errorf("Ethernet header % x", b[:14])
			}
			if b[14] != 0x60 || binary.BigEndian.Uint16(b[18:20]) != 32 || b[20] != protoICMPv6 || b[21] != 255 ||
				netip.AddrFrom16([16]byte(b[22:38])) != tc.a.src || netip.AddrFrom16([16]byte(b[38:54])) != tc.a.dst {
				t.Errorf("IPv6 header % x", b[14:54])
			}
		})
	}
}

func TestSolicitedNodeAndMulticastMAC(t *testing.T) {
	for _, ip := range []string{"2001:db8:100::200", "2001:db8::1:2:3:4", "fe80::abcd:ef12"} {
		a := netip.MustParseAddr(ip)
		want, err := ndp.SolicitedNodeMulticast(a)
		if err != nil {
			t.Fatal(err)
		}
		if got := solicitedNode(a); got != want {
			t.Errorf("solicitedNode(%s) = %s, want %s", a, got, want)
		}
	}
	if got, want := multicastMAC(netip.MustParseAddr("ff02::1:ff00:200")).String(), "33:33:ff:00:02:00"; got != want {
		t.Errorf("multicastMAC = %s, want %s", got, want)
	}
}

func TestFramesDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 128)
	arpFrame := arpRequestFrame()
	snm := solicitedNode(ip6Owned)
	nsFrame := solicitationFrame(multicastMAC(snm), macClient, ip6Client, snm, ip6Owned, &macClient)
	if n := testing.AllocsPerRun(100, func() {
		req, err := parseARPRequest(arpFrame)
		if err != nil {
			t.Fatal(err)
		}
		r := arpReplyTo(&req, macA)
		buf = appendARP(buf[:0], &r)
	}); n != 0 {
		t.Errorf("ARP request to reply allocates %.0f times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		ns, err := parseSolicitation(nsFrame)
		if err != nil {
			t.Fatal(err)
		}
		a := advertisementFor(&ns, macA, llA)
		buf = appendAdvertisement(buf[:0], &a)
	}); n != 0 {
		t.Errorf("solicitation to advertisement allocates %.0f times, want 0", n)
	}
}

func BenchmarkARPRequestToReply(b *testing.B) {
	buf := make([]byte, 0, 128)
	frame := arpRequestFrame()
	for b.Loop() {
		req, _ := parseARPRequest(frame)
		r := arpReplyTo(&req, macA)
		buf = appendARP(buf[:0], &r)
	}
}

func BenchmarkSolicitationToAdvertisement(b *testing.B) {
	buf := make([]byte, 0, 128)
	snm := solicitedNode(ip6Owned)
	frame := solicitationFrame(multicastMAC(snm), macClient, ip6Client, snm, ip6Owned, &macClient)
	for b.Loop() {
		ns, _ := parseSolicitation(frame)
		a := advertisementFor(&ns, macA, llA)
		buf = appendAdvertisement(buf[:0], &a)
	}
}

func equalMAC(b net.HardwareAddr, m mac) bool { return len(b) == 6 && mac(b) == m }
