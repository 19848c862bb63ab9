package bgp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseCommunity(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    uint32
		wantErr bool
	}{
		{in: "65000:100", want: 65000<<16 | 100},
		{in: "0:0", want: 0},
		{in: "65535:65535", want: 0xffffffff},
		{in: "65536:1", wantErr: true},
		{in: "1:65536", wantErr: true},
		{in: "1", wantErr: true},
		{in: "1:2:3", wantErr: true},
		{in: "a:b", wantErr: true},
		{in: "-1:2", wantErr: true},
		{in: " 1:2", wantErr: true},
		{in: "large:1:2", wantErr: true},
		{in: "", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseCommunity(tc.in)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), `community "`+tc.in+`": want A:B`) {
					t.Fatalf("parseCommunity(%q) = %d, %v; want an error naming the input and the format", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseCommunity(%q) = %#x, %v; want %#x", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseLargeCommunity(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    largeCommunity
		wantErr bool
	}{
		{in: "4200000000:1:2", want: largeCommunity{4200000000, 1, 2}},
		{in: "large:4294967295:0:7", want: largeCommunity{4294967295, 0, 7}},
		{in: "4294967296:1:2", wantErr: true},
		{in: "1:2", wantErr: true},
		{in: "large:1:2", wantErr: true},
		{in: "1:2:3:4", wantErr: true},
		{in: "1::3", wantErr: true},
		{in: "Large:1:2:3", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseLargeCommunity(tc.in)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), `large community "`+tc.in+`": want A:B:C`) {
					t.Fatalf("parseLargeCommunity(%q) = %v, %v; want an error naming the input and the format", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseLargeCommunity(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCompilePath(t *testing.T) {
	lp := uint32(200)
	for _, tc := range []struct {
		name    string
		path    Path
		want    wantPath
		wantErr string
	}{{
		name: "attributes are sorted and deduplicated",
		path: Path{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Peers: []string{"a"},
			Communities: []string{"65000:2", "65000:1", "65000:2"}, LargeCommunities: []string{"large:1:2:3", "1:2:3", "1:1:1"}, LocalPref: &lp},
		want: wantPath{prefix: netip.MustParsePrefix("203.0.113.10/32"), peers: []string{"a"}, attrs: attrs{
			communities: []uint32{65000<<16 | 1, 65000<<16 | 2}, large: []largeCommunity{{1, 1, 1}, {1, 2, 3}}, localPref: 200, hasLocalPref: true}},
	}, {
		name: "nil peers stay nil (every peer), empty stays empty (none)",
		path: Path{Prefix: netip.MustParsePrefix("2001:db8::/64"), Peers: []string{}, NextHop: netip.MustParseAddr("2001:db8::1")},
		want: wantPath{prefix: netip.MustParsePrefix("2001:db8::/64"), peers: []string{}, attrs: attrs{nextHop: netip.MustParseAddr("2001:db8::1")}},
	}, {
		name:    "no prefix",
		path:    Path{},
		wantErr: "prefix is not set",
	}, {
		name:    "host bits",
		path:    Path{Prefix: netip.MustParsePrefix("203.0.113.10/24")},
		wantErr: "prefix 203.0.113.10/24 has host bits set (the prefix is 203.0.113.0/24)",
	}, {
		name:    "IPv4-mapped IPv6",
		path:    Path{Prefix: netip.MustParsePrefix("::ffff:203.0.113.10/128")},
		wantErr: "must be a plain IPv4 or IPv6 prefix",
	}, {
		name:    "next hop in another family",
		path:    Path{Prefix: netip.MustParsePrefix("203.0.113.10/32"), NextHop: netip.MustParseAddr("2001:db8::1")},
		wantErr: "next hop 2001:db8::1 must be a unicast address in the family of 203.0.113.10/32",
	}, {
		name:    "unspecified next hop",
		path:    Path{Prefix: netip.MustParsePrefix("203.0.113.10/32"), NextHop: netip.IPv4Unspecified()},
		wantErr: "next hop 0.0.0.0 must be a unicast address",
	}, {
		name:    "bad community",
		path:    Path{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Communities: []string{"65000:100", "70000:1"}},
		wantErr: `community "70000:1"`,
	}, {
		name:    "bad large community",
		path:    Path{Prefix: netip.MustParsePrefix("203.0.113.10/32"), LargeCommunities: []string{"65000:100"}},
		wantErr: `large community "65000:100"`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := compilePath(&tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("compilePath: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("compilePath (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("nil Peers (every peer) and empty Peers (none) stay apart", func(t *testing.T) {
		all, _ := compilePath(&Path{Prefix: netip.MustParsePrefix("203.0.113.10/32")})
		none, _ := compilePath(&Path{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Peers: []string{}})
		if all.peers != nil || none.peers == nil || len(none.peers) != 0 {
			t.Errorf("peers: nil became %#v, empty became %#v", all.peers, none.peers)
		}
	})

	t.Run("the caller's Peers slice is copied", func(t *testing.T) {
		p := Path{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Peers: []string{"a"}}
		w, err := compilePath(&p)
		if err != nil {
			t.Fatal(err)
		}
		p.Peers[0] = "changed"
		if w.peers[0] != "a" {
			t.Errorf("compiled peers changed with the caller's slice: %v", w.peers)
		}
	})
}

func TestExpand(t *testing.T) {
	v4peer := Peer{Name: "v4", Address: netip.MustParseAddr("198.51.100.1")}
	v6peer := Peer{Name: "v6", Address: netip.MustParseAddr("2001:db8::1")}
	peers := map[string]Peer{"v4": v4peer, "v6": v6peer}
	nh4, nh6 := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8::2")
	p4 := netip.MustParsePrefix("203.0.113.10/32")
	p6 := netip.MustParsePrefix("2001:db8:ff::10/128")
	compile := func(ps ...Path) []wantPath {
		var out []wantPath
		for i := range ps {
			w, err := compilePath(&ps[i])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, w)
		}
		return out
	}
	comm := func(s ...string) []uint32 {
		var out []uint32
		for _, c := range s {
			v, _ := parseCommunity(c)
			out = append(out, v)
		}
		return out
	}
	lp100, lp200 := uint32(100), uint32(200)
	for _, tc := range []struct {
		name       string
		paths      []Path
		v4, v6     netip.Addr // Config.NextHopIPv4/6
		want       map[routeKey]attrs
		wantErrors []string
	}{{
		name:  "nil peers: every peer; cross-family next hops from the configuration",
		paths: []Path{{Prefix: p4}, {Prefix: p6}},
		v4:    nh4, v6: nh6,
		want: map[routeKey]attrs{
			{"v4", p4}: {}, {"v6", p4}: {nextHop: nh4},
			{"v4", p6}: {nextHop: nh6}, {"v6", p6}: {},
		},
	}, {
		name:  "cross-family without a configured next hop: left out and reported",
		paths: []Path{{Prefix: p4}, {Prefix: p6}},
		want:  map[routeKey]attrs{{"v4", p4}: {}, {"v6", p6}: {}},
		wantErrors: []string{
			"path 203.0.113.10/32 to peer v6: not announced: an IPv4 prefix over an IPv6 session needs an explicit next hop (Config.NextHopIPv4)",
			"path 2001:db8:ff::10/128 to peer v4: not announced: an IPv6 prefix over an IPv4 session needs an explicit next hop (Config.NextHopIPv6)",
		},
	}, {
		name:  "explicit next hop used on every session",
		paths: []Path{{Prefix: p4, NextHop: netip.MustParseAddr("198.51.100.99")}},
		want: map[routeKey]attrs{
			{"v4", p4}: {nextHop: netip.MustParseAddr("198.51.100.99")},
			{"v6", p4}: {nextHop: netip.MustParseAddr("198.51.100.99")},
		},
	}, {
		name:  "empty peers: none; unknown names: nothing, no error",
		paths: []Path{{Prefix: p4, Peers: []string{}}, {Prefix: p6, Peers: []string{"gone", "v6"}}},
		want:  map[routeKey]attrs{{"v6", p6}: {}},
	}, {
		name: "same prefix, different peers, different attributes",
		paths: []Path{
			{Prefix: p4, Peers: []string{"v4"}, Communities: []string{"65000:1"}},
			{Prefix: p4, Peers: []string{"v6"}, Communities: []string{"65000:2"}, NextHop: nh4},
		},
		want: map[routeKey]attrs{
			{"v4", p4}: {communities: comm("65000:1")},
			{"v6", p4}: {communities: comm("65000:2"), nextHop: nh4},
		},
	}, {
		name: "same prefix and peer: merged",
		paths: []Path{
			{Prefix: p4, Peers: []string{"v4"}, Communities: []string{"65000:2"}, LocalPref: &lp100},
			{Prefix: p4, Communities: []string{"65000:1", "65000:2"}, LargeCommunities: []string{"1:2:3"}, LocalPref: &lp200, NextHop: nh4},
		},
		want: map[routeKey]attrs{
			{"v4", p4}: {communities: comm("65000:1", "65000:2"), large: []largeCommunity{{1, 2, 3}}, localPref: 200, hasLocalPref: true, nextHop: nh4},
			{"v6", p4}: {communities: comm("65000:1", "65000:2"), large: []largeCommunity{{1, 2, 3}}, localPref: 200, hasLocalPref: true, nextHop: nh4},
		},
	}, {
		name: "conflicting next hops: the lower one, reported",
		paths: []Path{
			{Prefix: p4, Peers: []string{"v4"}, NextHop: netip.MustParseAddr("198.51.100.9")},
			{Prefix: p4, Peers: []string{"v4"}, NextHop: netip.MustParseAddr("198.51.100.8")},
		},
		want:       map[routeKey]attrs{{"v4", p4}: {nextHop: netip.MustParseAddr("198.51.100.8")}},
		wantErrors: []string{"path 203.0.113.10/32 to peer v4: conflicting next hops 198.51.100.9 and 198.51.100.8; using 198.51.100.8"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := expand(compile(tc.paths...), peers, tc.v4, tc.v6)
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			var gotErrs []string
			for _, err := range errs {
				gotErrs = append(gotErrs, err.Error())
			}
			if diff := cmp.Diff(tc.wantErrors, gotErrs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// cmpOpts compares the package's unexported values; nil and empty slices are equal.
var cmpOpts = cmp.Options{
	cmp.AllowUnexported(wantPath{}, routeKey{}, attrs{}, largeCommunity{}),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}
