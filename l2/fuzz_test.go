package l2

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// The fuzz targets check the frame code against mdlayher/arp and mdlayher/ndp. Findings stay
// as named cases in testdata/fuzz/<target>/ and in TestFuzzRegressions below.

// FuzzParseARPRequest: parsing never panics; what parses, mdlayher/arp parses the same; a
// parsed request rebuilds to a frame that parses back to it; and a request mdlayher/arp
// accepts, for Ethernet and IPv4 from a unicast sender, parses here too.
func FuzzParseARPRequest(f *testing.F) {
	f.Add(arpRequestFrame())
	f.Add(arpRequestFrame()[:42])
	g := gratuitousARP(arpReply, macA, ip4Owned)
	f.Add(appendARP(nil, &g))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseARPRequest(b)

		var ref struct {
			ok bool
			f  ethernet.Frame
			p  arp.Packet
		}
		if len(b) >= ethHeaderLen && binary.BigEndian.Uint16(b[12:14]) == etherTypeARP && ref.f.UnmarshalBinary(b) == nil && ref.p.UnmarshalBinary(ref.f.Payload) == nil {
			p := &ref.p
			ref.ok = p.HardwareType == 1 && p.ProtocolType == etherTypeIPv4 && p.HardwareAddrLength == 6 && p.IPLength == 4 &&
				p.Operation == arp.OperationRequest && ref.f.Source[0]&1 == 0 && p.SenderHardwareAddr[0]&1 == 0
		}
		if err != nil {
			if ref.ok {
				t.Fatalf("mdlayher/arp accepts the request %+v, we fail: %v", ref.p, err)
			}
			return
		}
		if !ref.ok {
			t.Fatalf("we accept %+v, mdlayher/arp does not", got)
		}
		p := &ref.p
		if got.senderIP != p.SenderIP || got.targetIP != p.TargetIP || !equalMAC(p.SenderHardwareAddr, got.senderMAC) ||
			!equalMAC(p.TargetHardwareAddr, got.targetMAC) || !equalMAC(ref.f.Source, got.ethSrc) || !equalMAC(ref.f.Destination, got.ethDst) {
			t.Fatalf("we parse %+v, mdlayher/arp %+v", got, p)
		}
		again, err := parseARPRequest(appendARP(nil, &got))
		if err != nil || again != got {
			t.Fatalf("rebuilt request parses to %+v, %v; want %+v", again, err, got)
		}
	})
}

// FuzzParseSolicitation: parsing a raw frame never panics, and what parses satisfies RFC 4861
// section 7.1.1 and agrees with mdlayher/ndp.
func FuzzParseSolicitation(f *testing.F) {
	snm := solicitedNode(ip6Owned)
	f.Add(solicitationFrame(multicastMAC(snm), macClient, ip6Client, snm, ip6Owned, &macClient))
	f.Add(solicitationFrame(macA, macClient, ip6Client, ip6Owned, ip6Owned, nil))
	f.Add(solicitationFrame(multicastMAC(snm), macClient, netip.IPv6Unspecified(), snm, ip6Owned, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSolicitation(b)
		if err != nil {
			return
		}
		checkSolicitation(t, b, s)
	})
}

// FuzzSolicitationBody fuzzes the ICMPv6 message of a solicitation inside valid IPv6 and
// Ethernet headers with a correct checksum, so the fuzzer reaches the option parsing. When
// mdlayher/ndp parses the message as a solicitation, we must parse it and agree, unless it
// breaks a rule of RFC 4861 section 7.1.1 that mdlayher/ndp does not check.
func FuzzSolicitationBody(f *testing.F) {
	seed := func(src, dst netip.Addr, sllao *mac) {
		b := solicitationFrame(macA, macClient, src, dst, ip6Owned, sllao)
		f.Add(src.AsSlice(), dst.AsSlice(), b[ethHeaderLen+ipv6HeaderLen+4:])
	}
	seed(ip6Client, solicitedNode(ip6Owned), &macClient)
	seed(ip6Client, ip6Owned, nil)
	seed(netip.IPv6Unspecified(), solicitedNode(ip6Owned), nil)
	// TestFuzzRegressions' first case: an unknown option of 256 bytes.
	long := make([]byte, 256)
	long[0], long[1] = 200, 32
	f.Add(ip6Client.AsSlice(), solicitedNode(ip6Owned).AsSlice(), append(append([]byte{0, 0, 0, 0}, ip6Owned.AsSlice()...), long...))
	f.Fuzz(func(t *testing.T, src, dst, rest []byte) {
		// Solicitations are short; long inputs only slow the fuzzer's minimization down.
		if len(src) != 16 || len(dst) != 16 || len(rest) > 400 {
			return
		}
		icmp := append([]byte{icmpTypeNS, 0, 0, 0}, rest...)
		b := ipv6Frame(macA, macClient, netip.AddrFrom16([16]byte(src)), netip.AddrFrom16([16]byte(dst)), ndpHopLimit, icmp)
		s, err := parseSolicitation(b)
		m, refErr := ndp.ParseMessage(icmp)
		if err == nil {
			checkSolicitation(t, b, s)
			return
		}
		if refErr != nil {
			return
		}
		ns := m.(*ndp.NeighborSolicitation)
		if !errors.Is(err, errInvalidNS) {
			t.Fatalf("mdlayher/ndp parses %+v, we fail with %v", ns, err)
		}
		// Rules mdlayher/ndp leaves to its caller.
		unspecified := netip.AddrFrom16([16]byte(src)).IsUnspecified()
		if !ns.TargetAddress.IsMulticast() && !(unspecified && (netip.AddrFrom16([16]byte(dst)) != solicitedNode(ns.TargetAddress) || hasSourceLLA(ns))) {
			t.Fatalf("mdlayher/ndp parses %+v, we fail with %v", ns, err)
		}
	})
}

// checkSolicitation checks a solicitation we parsed from frame b: the RFC 4861 rules hold,
// and mdlayher/ndp reads the same target and source link-layer address, or fails only on an
// option it is stricter about than RFC 4861 (which says to skip what is not understood).
func checkSolicitation(t *testing.T, b []byte, s solicitation) {
	t.Helper()
	ip := b[ethHeaderLen:]
	icmp := ip[ipv6HeaderLen : ipv6HeaderLen+int(binary.BigEndian.Uint16(ip[4:6]))]
	if ip[7] != 255 || icmp[1] != 0 || icmpv6Checksum(s.src, s.dst, icmp) != 0 || s.target.IsMulticast() || !s.target.Is6() {
		t.Fatalf("accepted an invalid solicitation: % x", b)
	}
	if s.src.IsUnspecified() && (s.hasSourceLLA || s.dst != solicitedNode(s.target)) {
		t.Fatalf("accepted an invalid DAD solicitation: %+v", s)
	}
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		return
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok {
		t.Fatalf("mdlayher/ndp reads a %T", m)
	}
	if ns.TargetAddress != s.target || hasSourceLLA(ns) != s.hasSourceLLA {
		t.Fatalf("we read %+v, mdlayher/ndp %+v", s, ns)
	}
	if s.hasSourceLLA && !equalMAC(sourceLLA(ns), s.sourceLLA) {
		t.Fatalf("we read source link-layer address %s, mdlayher/ndp %s", s.sourceLLA, sourceLLA(ns))
	}
}

// sourceLLA is the last Source Link-Layer Address option of ns, as parseSolicitation keeps
// the last.
func sourceLLA(ns *ndp.NeighborSolicitation) []byte {
	var addr []byte
	for _, o := range ns.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Source {
			addr = l.Addr
		}
	}
	return addr
}

func hasSourceLLA(ns *ndp.NeighborSolicitation) bool { return sourceLLA(ns) != nil }

// FuzzAdvertisement: every advertisement we build is one mdlayher/ndp parses back, with the
// flags, target and target link-layer address we meant, and a correct checksum.
func FuzzAdvertisement(f *testing.F) {
	f.Add(macClient[:], macA[:], llA.AsSlice(), ip6Client.AsSlice(), ip6Owned.AsSlice(), true)
	f.Add(allNodes.AsSlice()[:6], macA[:], ip6Owned.AsSlice(), allNodes.AsSlice(), ip6Owned.AsSlice(), false)
	f.Fuzz(func(t *testing.T, ethDst, ours, src, dst, target []byte, solicited bool) {
		if len(ethDst) != 6 || len(ours) != 6 || len(src) != 16 || len(dst) != 16 || len(target) != 16 {
			return
		}
		a := advertisement{ethDst: mac(ethDst), ours: mac(ours), src: netip.AddrFrom16([16]byte(src)),
			dst: netip.AddrFrom16([16]byte(dst)), target: netip.AddrFrom16([16]byte(target)), solicited: solicited}
		b := appendAdvertisement(nil, &a)
		icmp := b[ethHeaderLen+ipv6HeaderLen : ethHeaderLen+ipv6HeaderLen+32]
		if icmpv6Checksum(a.src, a.dst, icmp) != 0 {
			t.Fatal("bad checksum")
		}
		m, err := ndp.ParseMessage(icmp)
		if err != nil {
			// mdlayher/ndp refuses IPv4-mapped targets; nothing else.
			if a.target.Is4In6() {
				return
			}
			t.Fatalf("mdlayher/ndp cannot parse our advertisement: %v", err)
		}
		na := m.(*ndp.NeighborAdvertisement)
		if na.TargetAddress != a.target || na.Solicited != solicited || !na.Override || na.Router || len(na.Options) != 1 {
			t.Fatalf("got %+v", na)
		}
		if l, ok := na.Options[0].(*ndp.LinkLayerAddress); !ok || l.Direction != ndp.Target || !equalMAC(l.Addr, a.ours) {
			t.Fatalf("option %+v", na.Options[0])
		}
	})
}

// TestFuzzRegressions keeps, by name, the inputs where the frame code and the reference
// libraries were found to differ or nearly went wrong.
func TestFuzzRegressions(t *testing.T) {
	snm := solicitedNode(ip6Owned)
	withOptions := func(opts ...[]byte) []byte {
		body := []byte{icmpTypeNS, 0, 0, 0, 0, 0, 0, 0}
		body = append(body, ip6Owned.AsSlice()...)
		for _, o := range opts {
			body = append(body, o...)
		}
		return ipv6Frame(multicastMAC(snm), macClient, ip6Client, snm, ndpHopLimit, body)
	}
	option := func(typ byte, units int) []byte {
		o := make([]byte, units*8)
		o[0], o[1] = typ, byte(units)
		return o
	}
	sllao := append([]byte{optSourceLLA, 1}, macClient[:]...)
	other := mac{0x02, 0, 0, 0, 0, 0xdd}
	sllao2 := append([]byte{optSourceLLA, 1}, other[:]...)

	for _, tc := range []struct {
		name     string
		frame    []byte
		wantErr  error
		wantLLA  *mac
		ndpFails bool // mdlayher/ndp v1.1.0 cannot parse the message
	}{
		{name: "an unknown option of 256 bytes: RFC 4861 says skip it; ndp's uint8 length arithmetic overflows",
			frame: withOptions(option(200, 32), sllao), wantLLA: &macClient, ndpFails: true},
		{name: "an unknown option of 248 bytes is fine for both",
			frame: withOptions(option(200, 31), sllao), wantLLA: &macClient},
		{name: "an option of length zero ends parsing with an error, not a loop",
			frame: withOptions([]byte{200, 0, 0, 0, 0, 0, 0, 0}), wantErr: errInvalidNS, ndpFails: true},
		{name: "two source link-layer options: the last one counts",
			frame: withOptions(sllao, sllao2), wantLLA: &other},
		{name: "a source link-layer option of 16 bytes (not Ethernet) is ignored",
			frame: withOptions(option(optSourceLLA, 2)), ndpFails: true},
		{name: "a prefix information option in a solicitation is skipped",
			frame: withOptions(option(3, 4), sllao), wantLLA: &macClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseSolicitation(tc.frame)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				checkSolicitation(t, tc.frame, s)
				if (tc.wantLLA == nil) != !s.hasSourceLLA || (tc.wantLLA != nil && *tc.wantLLA != s.sourceLLA) {
					t.Errorf("source link-layer address %v (present %v), want %v", s.sourceLLA, s.hasSourceLLA, tc.wantLLA)
				}
			}
			_, ndpErr := ndp.ParseMessage(tc.frame[ethHeaderLen+ipv6HeaderLen:])
			if (ndpErr != nil) != tc.ndpFails {
				t.Errorf("mdlayher/ndp error %v, want failure %v", ndpErr, tc.ndpFails)
			}
		})
	}
}
