package allocator

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Range
		str      string // String() of the result
		size     string
	}{
		{"IPv4 CIDR", "198.51.100.0/24", Range{addr("198.51.100.0"), addr("198.51.100.255")}, "198.51.100.0/24", "256"},
		{"IPv4 /32", "198.51.100.7/32", Range{addr("198.51.100.7"), addr("198.51.100.7")}, "198.51.100.7", "1"},
		{"IPv4 /0", "0.0.0.0/0", Range{addr("0.0.0.0"), addr("255.255.255.255")}, "0.0.0.0/0", "4294967296"},
		{"IPv6 /64", "2001:db8::/64", Range{addr("2001:db8::"), addr("2001:db8::ffff:ffff:ffff:ffff")}, "2001:db8::/64", "18446744073709551616"},
		{"IPv6 /48", "2001:db8:1::/48", Range{addr("2001:db8:1::"), addr("2001:db8:1:ffff:ffff:ffff:ffff:ffff")}, "2001:db8:1::/48", "1208925819614629174706176"},
		{"IPv6 ::/0 saturates", "::/0", Range{addr("::"), addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, "::/0", "340282366920938463463374607431768211455"},
		{"IPv6 ::/1", "::/1", Range{addr("::"), addr("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, "::/1", "170141183460469231731687303715884105728"},
		{"IPv4 range", "198.51.100.200-198.51.100.250", Range{addr("198.51.100.200"), addr("198.51.100.250")}, "198.51.100.200-198.51.100.250", "51"},
		{"range with spaces", " 198.51.100.200 - 198.51.100.250 ", Range{addr("198.51.100.200"), addr("198.51.100.250")}, "198.51.100.200-198.51.100.250", "51"},
		{"range that is a block prints as CIDR", "10.0.1.0-10.0.1.127", Range{addr("10.0.1.0"), addr("10.0.1.127")}, "10.0.1.0/25", "128"},
		{"range crossing a /24", "10.0.0.250-10.0.1.5", Range{addr("10.0.0.250"), addr("10.0.1.5")}, "10.0.0.250-10.0.1.5", "12"},
		{"one-address range", "10.0.0.1-10.0.0.1", Range{addr("10.0.0.1"), addr("10.0.0.1")}, "10.0.0.1", "1"},
		{"IPv6 range", "2001:db8::10-2001:db8::1:0", Range{addr("2001:db8::10"), addr("2001:db8::1:0")}, "2001:db8::10-2001:db8::1:0", "65521"},
		{"single IPv4", "203.0.113.9", Range{addr("203.0.113.9"), addr("203.0.113.9")}, "203.0.113.9", "1"},
		{"single IPv6", "2001:db8::9", Range{addr("2001:db8::9"), addr("2001:db8::9")}, "2001:db8::9", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRange(tc.in)
			if err != nil {
				t.Fatalf("ParseRange(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("ParseRange(%q) (-want +got):\n%s", tc.in, diff)
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			if s := got.Size().String(); s != tc.size {
				t.Errorf("Size() = %s, want %s", s, tc.size)
			}
		})
	}
}

func TestParseRangeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, msg string
	}{
		{"empty", "", `invalid address range "": ParseAddr(""): unable to parse IP`},
		{"host bits set", "198.51.100.7/24", `invalid address range "198.51.100.7/24": host bits are set (the block is 198.51.100.0/24)`},
		{"IPv6 host bits set", "2001:db8::1/64", `invalid address range "2001:db8::1/64": host bits are set (the block is 2001:db8::/64)`},
		{"bad prefix length", "198.51.100.0/33", `invalid address range "198.51.100.0/33": netip.ParsePrefix("198.51.100.0/33"): prefix length out of range`},
		{"reversed range", "10.0.0.9-10.0.0.1", `invalid address range "10.0.0.9-10.0.0.1": 10.0.0.9 is after 10.0.0.1`},
		{"mixed families", "10.0.0.1-2001:db8::1", `invalid address range "10.0.0.1-2001:db8::1": 10.0.0.1 and 2001:db8::1 are of different families`},
		{"zone", "fe80::1%eth0", `invalid address range "fe80::1%eth0": fe80::1%eth0 has a zone`},
		{"zone in a range", "fe80::1%eth0-fe80::9", `invalid address range "fe80::1%eth0-fe80::9": fe80::1%eth0 has a zone`},
		{"IPv4-mapped", "::ffff:10.0.0.1", `invalid address range "::ffff:10.0.0.1": ::ffff:10.0.0.1 is an IPv4-mapped IPv6 address`},
		{"IPv4-mapped CIDR", "::ffff:10.0.0.0/120", `invalid address range "::ffff:10.0.0.0/120": ::ffff:10.0.0.0 is an IPv4-mapped IPv6 address`},
		{"two dashes", "10.0.0.1-10.0.0.2-10.0.0.3", `invalid address range "10.0.0.1-10.0.0.2-10.0.0.3": ParseAddr("10.0.0.2-10.0.0.3"): unexpected character (at "-10.0.0.3")`},
		{"garbage", "web", `invalid address range "web": ParseAddr("web"): unable to parse IP`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRange(tc.in)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Input != tc.in {
				t.Fatalf("ParseRange(%q) error = %#v, want a *ParseError with the input", tc.in, err)
			}
			if err.Error() != tc.msg {
				t.Errorf("error = %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestParseAddresses(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []Range
		err  string
	}{
		{name: "none", in: nil, want: []Range{}},
		{
			name: "mixed families kept in order",
			in:   []string{"2001:db8::/120", "198.51.100.0/28", "203.0.113.5"},
			want: []Range{{addr("2001:db8::"), addr("2001:db8::ff")}, {addr("198.51.100.0"), addr("198.51.100.15")}, {addr("203.0.113.5"), addr("203.0.113.5")}},
		},
		{
			name: "adjacent ranges are fine",
			in:   []string{"10.0.0.0/25", "10.0.0.128-10.0.0.255"},
			want: []Range{{addr("10.0.0.0"), addr("10.0.0.127")}, {addr("10.0.0.128"), addr("10.0.0.255")}},
		},
		{name: "overlap", in: []string{"10.0.0.0/24", "10.0.1.0/24", "10.0.0.200-10.0.0.210"}, err: `invalid address range "10.0.0.200-10.0.0.210": overlaps "10.0.0.0/24"`},
		{name: "same address twice", in: []string{"2001:db8::1", "2001:db8::1"}, err: `invalid address range "2001:db8::1": overlaps "2001:db8::1"`},
		{name: "overlap hidden behind a larger range", in: []string{"10.0.0.0/16", "10.0.5.0/24", "10.0.9.0/24"}, err: `invalid address range "10.0.5.0/24": overlaps "10.0.0.0/16"`},
		{name: "parse error", in: []string{"10.0.0.0/24", "10.0.0.1/24"}, err: `invalid address range "10.0.0.1/24": host bits are set (the block is 10.0.0.0/24)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAddresses(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("ParseAddresses(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("ParseAddresses(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestRangeMethods(t *testing.T) {
	r := Range{addr("10.0.0.10"), addr("10.0.0.20")}
	for _, tc := range []struct {
		a    string
		want bool
	}{{"10.0.0.9", false}, {"10.0.0.10", true}, {"10.0.0.20", true}, {"10.0.0.21", false}, {"::a00:a", false}} {
		if got := r.Contains(addr(tc.a)); got != tc.want {
			t.Errorf("Contains(%s) = %t, want %t", tc.a, got, tc.want)
		}
	}
	for _, tc := range []struct {
		o    Range
		want bool
	}{
		{Range{addr("10.0.0.0"), addr("10.0.0.9")}, false},
		{Range{addr("10.0.0.0"), addr("10.0.0.10")}, true},
		{Range{addr("10.0.0.20"), addr("10.0.0.30")}, true},
		{Range{addr("10.0.0.12"), addr("10.0.0.13")}, true},
		{Range{addr("::"), addr("::ffff")}, false},
	} {
		if got := r.Overlaps(tc.o); got != tc.want {
			t.Errorf("Overlaps(%s) = %t, want %t", tc.o, got, tc.want)
		}
	}
	if (Range{}).IsValid() || (Range{}).String() != "invalid Range" {
		t.Error("the zero Range is valid")
	}
	if p, ok := r.Prefix(); ok {
		t.Errorf("Prefix() = %s, want none", p)
	}
	if got := PrefixRange(netip.MustParsePrefix("10.1.2.3/8")); got != (Range{addr("10.0.0.0"), addr("10.255.255.255")}) {
		t.Errorf("PrefixRange masks to %s", got)
	}
	if got := PrefixRange(netip.Prefix{}); got.IsValid() {
		t.Errorf("PrefixRange of the zero prefix = %s", got)
	}
}
