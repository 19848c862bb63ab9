package allocator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// reportOpts compares Reports, with errors by message.
var reportOpts = cmp.Options{cmpOpts, cmp.Comparer(func(x, y error) bool {
	return (x == nil) == (y == nil) && (x == nil || x.Error() == y.Error())
}), cmpopts.EquateEmpty()}

func rng(t *testing.T, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSetPoolsOverlaps(t *testing.T) {
	a := New()
	rep := a.SetPools([]Pool{
		newPool(t, "old", "10.0.0.0/24", "2001:db8::/64"),
		newPool(t, "new", "10.0.1.0/24", "2001:db8::1:0-2001:db8::1:ff"),
		newPool(t, "newer", "10.0.1.128/25", "10.0.2.0/24"),
		newPool(t, "apart", "10.0.3.0/24"),
	})
	want := Report{Overlaps: []Overlap{
		{Pool: "new", With: "old", Range: rng(t, "2001:db8::1:0-2001:db8::1:ff")},
		// newer overlaps only a disabled pool, and is disabled as well.
		{Pool: "newer", With: "new", Range: rng(t, "10.0.1.128/25")},
	}}
	if diff := cmp.Diff(want, rep, reportOpts); diff != "" {
		t.Fatalf("SetPools (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"new", "newer"}, rep.Disabled()); diff != "" {
		t.Errorf("Disabled (-want +got):\n%s", diff)
	}

	t.Run("a disabled pool is not used automatically", func(t *testing.T) {
		// "apart" < "new" < "newer" < "old" by name; new and newer are skipped.
		check(t, a, v4("x"), []Assigned{in("10.0.3.0", "apart")}, nil)
	})
	t.Run("a disabled pool requested by name", func(t *testing.T) {
		check(t, a, req(v4("y"), func(r *Request) { r.Pool = "new" }), nil,
			&errOf{NoPool, `pool "new" is disabled: it overlaps pool "old"`})
	})
	t.Run("an address of a disabled pool requested", func(t *testing.T) {
		check(t, a, req(v4("y"), func(r *Request) { r.IPs = addrs("10.0.1.5") }), nil,
			&errOf{RequestedIPUnavailable, `10.0.1.5 is in pool "new", which is disabled: it overlaps pool "old"`})
	})
	t.Run("an address in the overlap belongs to the pool with precedence", func(t *testing.T) {
		check(t, a, req(v6("y"), func(r *Request) { r.IPs = addrs("2001:db8::1:5") }), []Assigned{in("2001:db8::1:5", "old")}, nil)
	})
	t.Run("an address in the overlap, requested with the disabled pool", func(t *testing.T) {
		check(t, a, req(v6("z"), func(r *Request) { r.IPs, r.Pool = addrs("2001:db8::1:6"), "new" }), nil,
			&errOf{RequestedIPUnavailable, `2001:db8::1:6 is in pool "new", which is disabled: it overlaps pool "old"`})
	})
	t.Run("a disabled pool keeps restored addresses and counts them", func(t *testing.T) {
		if _, err := a.Restore(v4("r"), addrs("10.0.1.9")); err != nil {
			t.Fatal(err)
		}
		holds(t, a, "ns/r", in("10.0.1.9", "new"))
		for _, st := range a.Stats() {
			if st.Pool == "new" && st.Family == IPv4 {
				if diff := cmp.Diff(PoolStats{Pool: "new", Family: IPv4, Total: CountOf(256), Assigned: CountOf(1)}, st); diff != "" {
					t.Errorf("stats (-want +got):\n%s", diff)
				}
			}
		}
	})
	t.Run("the order of the slice is the precedence", func(t *testing.T) {
		b := New()
		rep := b.SetPools([]Pool{newPool(t, "new", "10.0.0.128/25"), newPool(t, "old", "10.0.0.0/24")})
		want := Report{Overlaps: []Overlap{{Pool: "old", With: "new", Range: rng(t, "10.0.0.128/25")}}}
		if diff := cmp.Diff(want, rep, reportOpts); diff != "" {
			t.Fatalf("SetPools (-want +got):\n%s", diff)
		}
	})
	if err := a.verify(); err != nil {
		t.Fatal(err)
	}
}

func TestSetPoolsInvalid(t *testing.T) {
	a := New()
	rep := a.SetPools([]Pool{
		newPool(t, "web", "10.0.0.0/24"),
		{Name: "", Ranges: ranges(t, "10.0.5.0/24")},
		newPool(t, "web", "10.0.9.0/24"),
		{Name: "bad", Ranges: []Range{{addr("10.0.1.9"), addr("10.0.1.1")}}},
		{Name: "mixed", Ranges: []Range{{addr("10.0.1.9"), addr("2001:db8::")}}},
		{Name: "self", Ranges: []Range{rng(t, "10.0.2.0/24"), rng(t, "10.0.2.128/25")}},
		{Name: "zero", Ranges: []Range{{}}},
	})
	want := Report{Invalid: []InvalidPool{
		{Pool: "", Err: errString("pool has no name")},
		{Pool: "web", Err: errString(`pool "web" is listed twice`)},
		{Pool: "bad", Err: errString(`pool "bad": invalid range: 10.0.1.9 is after 10.0.1.1`)},
		{Pool: "mixed", Err: errString(`pool "mixed": invalid range: 10.0.1.9 and 2001:db8:: are of different families`)},
		{Pool: "self", Err: errString(`pool "self": ranges 10.0.2.0/24 and 10.0.2.128/25 overlap`)},
		{Pool: "zero", Err: errString(`pool "zero": invalid range: invalid address`)},
	}}
	if diff := cmp.Diff(want, rep, reportOpts); diff != "" {
		t.Fatalf("SetPools (-want +got):\n%s", diff)
	}
	check(t, a, v4("a"), []Assigned{in("10.0.0.0", "web")}, nil)
	if diff := cmp.Diff([]PoolStats{{Pool: "web", Family: IPv4, Total: CountOf(256), Assigned: CountOf(1), Available: CountOf(255)}}, a.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestSetPoolsOutside(t *testing.T) {
	a := newAllocator(t, newPool(t, "web", "10.0.0.0/29"), newPool(t, "other", "10.0.1.0/29"))
	mustAllocate(t, a,
		req(v4("a"), func(r *Request) { r.IPs = addrs("10.0.0.6") }),
		shared(req(v4("b"), func(r *Request) { r.IPs = addrs("10.0.0.7") }), "k", tcp(80)),
		shared(req(v4("c"), func(r *Request) { r.IPs = addrs("10.0.0.7") }), "k", tcp(443)),
		req(v4("d"), func(r *Request) { r.Pool = "web" }))
	if _, err := a.Restore(v4("e"), addrs("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Outside{{Addr: addr("192.0.2.1"), Services: []string{"ns/e"}}}, a.Outside(), reportOpts); diff != "" {
		t.Errorf("Outside after Restore (-want +got):\n%s", diff)
	}

	t.Run("a shrink reports what is left outside, and drops nothing", func(t *testing.T) {
		rep := a.SetPools([]Pool{newPool(t, "web", "10.0.0.0/30"), newPool(t, "other", "10.0.1.0/29")})
		want := Report{Outside: []Outside{
			{Addr: addr("10.0.0.6"), Pool: "web", Services: []string{"ns/a"}},
			{Addr: addr("10.0.0.7"), Pool: "web", Services: []string{"ns/b", "ns/c"}},
			{Addr: addr("192.0.2.1"), Services: []string{"ns/e"}},
		}}
		if diff := cmp.Diff(want, rep, reportOpts); diff != "" {
			t.Errorf("SetPools (-want +got):\n%s", diff)
		}
		holds(t, a, "ns/a", in("10.0.0.6", ""))
		holds(t, a, "ns/c", in("10.0.0.7", ""))
		holds(t, a, "ns/d", in("10.0.0.0", "web"))
		wantStats := []PoolStats{
			{Pool: "other", Family: IPv4, Total: CountOf(8), Available: CountOf(8)},
			{Pool: "web", Family: IPv4, Total: CountOf(4), Assigned: CountOf(1), Available: CountOf(3)},
		}
		if diff := cmp.Diff(wantStats, a.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
	t.Run("a deleted pool's addresses are outside, still naming it", func(t *testing.T) {
		rep := a.SetPools([]Pool{newPool(t, "other", "10.0.1.0/29")})
		want := Report{Outside: []Outside{
			{Addr: addr("10.0.0.0"), Pool: "web", Services: []string{"ns/d"}},
			{Addr: addr("10.0.0.6"), Pool: "web", Services: []string{"ns/a"}},
			{Addr: addr("10.0.0.7"), Pool: "web", Services: []string{"ns/b", "ns/c"}},
			{Addr: addr("192.0.2.1"), Services: []string{"ns/e"}},
		}}
		if diff := cmp.Diff(want, rep, reportOpts); diff != "" {
			t.Errorf("SetPools (-want +got):\n%s", diff)
		}
	})
	t.Run("a pool that covers them again takes them back", func(t *testing.T) {
		rep := a.SetPools([]Pool{newPool(t, "other", "10.0.1.0/29"), newPool(t, "wide", "10.0.0.0/23")})
		want := Report{
			Overlaps: []Overlap{{Pool: "wide", With: "other", Range: rng(t, "10.0.1.0/29")}},
			Outside:  []Outside{{Addr: addr("192.0.2.1"), Services: []string{"ns/e"}}},
		}
		if diff := cmp.Diff(want, rep, reportOpts); diff != "" {
			t.Errorf("SetPools (-want +got):\n%s", diff)
		}
		holds(t, a, "ns/a", in("10.0.0.6", "wide"))
		rep = a.SetPools([]Pool{newPool(t, "wide", "10.0.0.0/24")})
		if diff := cmp.Diff(Report{Outside: want.Outside}, rep, reportOpts); diff != "" {
			t.Errorf("SetPools (-want +got):\n%s", diff)
		}
		wantStats := []PoolStats{{Pool: "wide", Family: IPv4, Total: CountOf(256), Assigned: CountOf(3), Available: CountOf(253)}}
		if diff := cmp.Diff(wantStats, a.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		check(t, a, v4("f"), []Assigned{in("10.0.0.1", "wide")}, nil)
	})
	if err := a.verify(); err != nil {
		t.Fatal(err)
	}
}

func TestStats(t *testing.T) {
	count := func(s string) Count {
		var c Count
		for _, d := range s {
			// c = c*10 + d, by doubling: 10c = 8c + 2c.
			c2 := c.Add(c)
			c8 := c2.Add(c2).Add(c2.Add(c2))
			c = c8.Add(c2).Add(CountOf(uint64(d - '0')))
		}
		return c
	}
	for _, tc := range []struct {
		name  string
		pool  Pool
		take  []Request
		want  []PoolStats
		total string // of the IPv6 family, as text
	}{
		{
			name: "IPv6 /64",
			pool: newPool(t, "v6", "2001:db8::/64"),
			take: []Request{v6("a"), v6("b"), v6("c")},
			want: []PoolStats{{Pool: "v6", Family: IPv6, Total: count("18446744073709551616"), Assigned: CountOf(3), Available: count("18446744073709551613")}},
		},
		{
			name: "IPv6 /48",
			pool: newPool(t, "v6", "2001:db8:1::/48"),
			take: []Request{v6("a")},
			want: []PoolStats{{Pool: "v6", Family: IPv6, Total: count("1208925819614629174706176"), Assigned: CountOf(1), Available: count("1208925819614629174706175")}},
		},
		{
			name: "the whole IPv6 space",
			pool: newPool(t, "v6", "::/0"),
			take: []Request{v6("a"), v6("b")},
			want: []PoolStats{{Pool: "v6", Family: IPv6, Total: count("340282366920938463463374607431768211455"), Assigned: CountOf(2), Available: count("340282366920938463463374607431768211454")}},
		},
		{
			name: "mixed families",
			pool: newPool(t, "web", "2001:db8::/64", "10.0.0.0/24", "10.0.1.0/25"),
			take: []Request{dual("a", RequireDualStack)},
			want: []PoolStats{
				{Pool: "web", Family: IPv4, Total: CountOf(384), Assigned: CountOf(1), Available: CountOf(383)},
				{Pool: "web", Family: IPv6, Total: count("18446744073709551616"), Assigned: CountOf(1), Available: count("18446744073709551615")},
			},
		},
		{
			name: "avoidBuggyIPs: the total counts .0 and .255, available does not",
			pool: with(newPool(t, "web", "10.0.0.0/23"), func(p *Pool) { p.AvoidBuggyIPs = true }),
			take: []Request{v4("a")},
			want: []PoolStats{{Pool: "web", Family: IPv4, Total: CountOf(512), Assigned: CountOf(1), Available: CountOf(507)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAllocator(t, tc.pool)
			mustAllocate(t, a, tc.take...)
			if diff := cmp.Diff(tc.want, a.Stats()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
	if got := count("18446744073709551616").String(); got != "18446744073709551616" {
		t.Errorf("count helper: %s", got)
	}
}
