package allocator

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchPools are the pools of the benchmarks: a large IPv4 and a large
// IPv6 pool, so the pool size is not what limits.
var benchPools = []struct {
	name   string
	prefix string
	family Family
}{
	{"IPv4-12", "10.0.0.0/12", IPv4},
	{"IPv6-64", "2001:db8::/64", IPv6},
}

// filled returns an Allocator whose pool holds n assignments. With
// fragmented, it allocates 2n and releases every other one, so the free
// space is n separate holes.
func filled(tb testing.TB, prefix string, f Family, n int, fragmented bool) *Allocator {
	tb.Helper()
	a := New()
	a.SetPools([]Pool{{Name: "bench", AutoAssign: true, Ranges: []Range{PrefixRange(netip.MustParsePrefix(prefix))}}})
	total := n
	if fragmented {
		total = 2 * n
	}
	for i := range total {
		if _, err := a.Allocate(Request{Service: fmt.Sprintf("bench/s%d", i), Namespace: "bench", Families: []Family{f}}); err != nil {
			tb.Fatal(err)
		}
	}
	if fragmented {
		for i := 0; i < total; i += 2 {
			a.Release(fmt.Sprintf("bench/s%d", i))
		}
	}
	return a
}

// BenchmarkAllocate measures an Allocate of a new Service plus its Release,
// with n assignments already in the pool.
func BenchmarkAllocate(b *testing.B) {
	for _, p := range benchPools {
		for _, n := range []int{1_000, 10_000, 100_000} {
			for _, fragmented := range []bool{false, true} {
				name := fmt.Sprintf("%s/existing=%dk", p.name, n/1000)
				if fragmented {
					name += "/fragmented"
				}
				b.Run(name, func(b *testing.B) {
					a := filled(b, p.prefix, p.family, n, fragmented)
					r := Request{Service: "bench/new", Namespace: "bench", Families: []Family{p.family}}
					b.ReportAllocs()
					for b.Loop() {
						if _, err := a.Allocate(r); err != nil {
							b.Fatal(err)
						}
						a.Release(r.Service)
					}
				})
			}
		}
	}
}

// BenchmarkReallocate measures Allocate for a Service that already holds
// its address: what every reconcile of an unchanged Service costs.
func BenchmarkReallocate(b *testing.B) {
	for _, p := range benchPools {
		b.Run(fmt.Sprintf("%s/existing=100k", p.name), func(b *testing.B) {
			a := filled(b, p.prefix, p.family, 100_000, false)
			r := Request{Service: "bench/s500", Namespace: "bench", Families: []Family{p.family}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Allocate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAllocateShared measures joining an address under a sharing key
// and leaving it, with 10k other keys in the pool.
func BenchmarkAllocateShared(b *testing.B) {
	a := New()
	a.SetPools([]Pool{{Name: "bench", AutoAssign: true, Ranges: []Range{PrefixRange(netip.MustParsePrefix("10.0.0.0/12"))}}})
	for i := range 10_000 {
		r := Request{Service: fmt.Sprintf("bench/s%d", i), Families: []Family{IPv4}, SharingKey: fmt.Sprintf("k%d", i), Ports: []Port{tcp(80)}}
		if _, err := a.Allocate(r); err != nil {
			b.Fatal(err)
		}
	}
	r := Request{Service: "bench/new", Families: []Family{IPv4}, SharingKey: "k5000", Ports: []Port{tcp(443)}}
	b.ReportAllocs()
	for b.Loop() {
		if as, err := a.Allocate(r); err != nil || len(a.Holders(as.IPs[0].Addr)) != 2 {
			b.Fatal(err, as)
		}
		a.Release(r.Service)
	}
}

// BenchmarkSetPools measures replacing the pool set with 100k assignments
// held: every address is attributed again.
func BenchmarkSetPools(b *testing.B) {
	for _, p := range benchPools {
		b.Run(fmt.Sprintf("%s/existing=100k", p.name), func(b *testing.B) {
			a := filled(b, p.prefix, p.family, 100_000, false)
			pools := []Pool{{Name: "bench", AutoAssign: true, Ranges: []Range{PrefixRange(netip.MustParsePrefix(p.prefix))}}}
			b.ReportAllocs()
			for b.Loop() {
				a.SetPools(pools)
			}
		})
	}
}

// TestAllocationCost keeps the cost claims of the package doc honest: an
// allocate+release pair makes a handful of allocations whatever the number
// of assignments, and re-allocating a held address makes one (the result).
func TestAllocationCost(t *testing.T) {
	if testing.Short() {
		t.Skip("fills an allocator with 10k assignments")
	}
	for _, p := range benchPools {
		a := filled(t, p.prefix, p.family, 10_000, true)
		r := Request{Service: "bench/new", Namespace: "bench", Families: []Family{p.family}}
		pair := testing.AllocsPerRun(100, func() {
			if _, err := a.Allocate(r); err != nil {
				t.Fatal(err)
			}
			a.Release(r.Service)
		})
		if pair > 6 {
			t.Errorf("%s: %v allocations per allocate+release, want at most 6", p.name, pair)
		}
		held := Request{Service: "bench/s1", Namespace: "bench", Families: []Family{p.family}}
		again := testing.AllocsPerRun(100, func() {
			if _, err := a.Allocate(held); err != nil {
				t.Fatal(err)
			}
		})
		if again > 1 {
			t.Errorf("%s: %v allocations to re-allocate a held address, want at most 1", p.name, again)
		}
	}
}
