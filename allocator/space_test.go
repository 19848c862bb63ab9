package allocator

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuggyCoordinates(t *testing.T) {
	s := newSpace(IPv4, true, nil)
	prev := u128{}
	for i, a := range addrs("0.0.0.1", "0.0.0.254", "0.0.1.1", "10.0.0.254", "10.0.1.1", "255.255.255.254") {
		c, ok := s.coord(a)
		if !ok {
			t.Fatalf("%s has no coordinate", a)
		}
		if got := s.addr(c); got != a {
			t.Errorf("%s -> %v -> %s", a, c, got)
		}
		if i > 0 && !prev.less(c) {
			t.Errorf("coordinates not increasing at %s", a)
		}
		prev = c
	}
	if c1, _ := s.coord(addr("10.0.0.254")); c1.next() != must(s.coord(addr("10.0.1.1"))) {
		t.Error(".254 and the next .1 are not neighbours")
	}
	for _, a := range addrs("10.0.0.0", "10.0.0.255", "0.0.0.0", "255.255.255.255") {
		if _, ok := s.coord(a); ok {
			t.Errorf("%s has a coordinate", a)
		}
	}
}

func must(c u128, ok bool) u128 {
	if !ok {
		panic("no coordinate")
	}
	return c
}

func TestSpace(t *testing.T) {
	rs := func(list ...string) []Range { return ranges(t, list...) }
	for _, tc := range []struct {
		name      string
		ranges    []Range
		skipBuggy bool
		take, put []string
		want      []Range
		avail     string
	}{
		{
			name:   "touching ranges merge",
			ranges: rs("10.0.0.0/25", "10.0.0.128/25", "10.0.2.0/24"),
			want:   rs("10.0.0.0/24", "10.0.2.0/24"),
			avail:  "512",
		},
		{
			name:      "buggy addresses are not free; /24s merge across them",
			ranges:    rs("10.0.0.0/24", "10.0.1.0/24"),
			skipBuggy: true,
			want:      []Range{{addr("10.0.0.1"), addr("10.0.1.254")}},
			avail:     "508",
		},
		{
			name:   "take splits, put merges back",
			ranges: rs("10.0.0.0/29"),
			take:   []string{"10.0.0.3", "10.0.0.0", "10.0.0.7", "10.0.0.4"},
			put:    []string{"10.0.0.4"},
			want:   rs("10.0.0.1-10.0.0.2", "10.0.0.4-10.0.0.6"),
			avail:  "5",
		},
		{
			name:   "put joins two spans",
			ranges: rs("10.0.0.0/29"),
			take:   []string{"10.0.0.3"},
			put:    []string{"10.0.0.3"},
			want:   rs("10.0.0.0/29"),
			avail:  "8",
		},
		{
			name:   "put joins to the left only",
			ranges: rs("10.0.0.0/29"),
			take:   []string{"10.0.0.6", "10.0.0.7"},
			put:    []string{"10.0.0.6"},
			want:   rs("10.0.0.0-10.0.0.6"),
			avail:  "7",
		},
		{
			name:   "put of the address 0",
			ranges: rs("0.0.0.0/30"),
			take:   []string{"0.0.0.0", "0.0.0.2"},
			put:    []string{"0.0.0.0", "0.0.0.0"},
			want:   rs("0.0.0.0/31", "0.0.0.3"),
			avail:  "3",
		},
		{
			name:   "the whole IPv6 space saturates, then counts exactly",
			ranges: rs("::/1", "8000::/1"),
			take:   []string{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
			put:    []string{"::"},
			want:   rs("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
			avail:  "340282366920938463463374607431768211455",
		},
		{
			name:   "the whole IPv6 space, nothing taken",
			ranges: rs("::/0"),
			want:   rs("::/0"),
			avail:  "340282366920938463463374607431768211455",
		},
		{
			name:   "a /64",
			ranges: rs("2001:db8::/64"),
			take:   []string{"2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"},
			want:   rs("2001:db8::1-2001:db8::ffff:ffff:ffff:fffe"),
			avail:  "18446744073709551614",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.ranges[0].Family()
			s := newSpace(f, tc.skipBuggy, tc.ranges)
			for _, a := range tc.take {
				if !s.take(addr(a)) {
					t.Fatalf("take(%s) found it not free", a)
				}
				if s.take(addr(a)) {
					t.Fatalf("take(%s) twice succeeded", a)
				}
			}
			for i, a := range tc.put {
				// Putting back an address already free is refused.
				if got, want := s.put(addr(a)), !slices.Contains(tc.put[:i], a); got != want {
					t.Fatalf("put(%s) = %t, want %t", a, got, want)
				}
			}
			if diff := cmp.Diff(tc.want, spansOf(s), cmpOpts); diff != "" {
				t.Errorf("spans (-want +got):\n%s", diff)
			}
			if got := s.available().String(); got != tc.avail {
				t.Errorf("available() = %s, want %s", got, tc.avail)
			}
			if err := verifySpace(s); err != nil {
				t.Error(err)
			}
		})
	}
}
