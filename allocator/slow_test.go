package allocator

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// This file holds the test-only checks of the allocator's state: verify
// recomputes every index from the records, and the slow* functions are a
// reference that walks addresses one by one (only for small pools).

// slowLimit is the largest pool family the slow reference enumerates.
const slowLimit = 1 << 12

// verify checks the invariants of a's state and returns the first
// violation.
func (a *Allocator) verify() error {
	for name, s := range a.services {
		if s.name != name {
			return fmt.Errorf("service %q filed under %q", s.name, name)
		}
		if len(s.addrs) == 0 {
			return fmt.Errorf("service %q holds nothing but is recorded", name)
		}
		if len(s.addrs) == 2 && FamilyOf(s.addrs[0].addr) == FamilyOf(s.addrs[1].addr) {
			return fmt.Errorf("service %q holds two %s addresses", name, FamilyOf(s.addrs[0].addr))
		}
		if !slices.IsSortedFunc(s.ports, comparePorts) || len(slices.CompactFunc(slices.Clone(s.ports), func(x, y Port) bool { return x == y })) != len(s.ports) {
			return fmt.Errorf("service %q: ports %v not sorted and unique", name, s.ports)
		}
		for _, r := range s.addrs {
			if a.addrs[r.addr] != r {
				return fmt.Errorf("service %q holds %s, whose record is not the address's", name, r.addr)
			}
			if !slices.Contains(r.holders, s) {
				return fmt.Errorf("service %q holds %s but is not among its holders", name, r.addr)
			}
		}
	}
	byKey := map[string][]*record{}
	for addr, r := range a.addrs {
		if err := a.verifyRecord(addr, r); err != nil {
			return err
		}
		if r.share.key != "" {
			byKey[r.share.key] = append(byKey[r.share.key], r)
		}
	}
	for key, rs := range byKey {
		slices.SortFunc(rs, func(x, y *record) int { return x.addr.Compare(y.addr) })
		if !slices.Equal(rs, a.byKey[key]) {
			return fmt.Errorf("sharing key %q: index %v, records %v", key, addrsOf(a.byKey[key]), addrsOf(rs))
		}
	}
	if len(byKey) != len(a.byKey) {
		return fmt.Errorf("sharing key index has %d keys, records %d", len(a.byKey), len(byKey))
	}
	for _, p := range a.pools {
		if err := a.verifyPool(p); err != nil {
			return err
		}
	}
	return nil
}

func addrsOf(rs []*record) []netip.Addr {
	var addrs []netip.Addr
	for _, r := range rs {
		addrs = append(addrs, r.addr)
	}
	return addrs
}

func (a *Allocator) verifyRecord(addr netip.Addr, r *record) error {
	if r.addr != addr {
		return fmt.Errorf("record of %s filed under %s", r.addr, addr)
	}
	if len(r.holders) == 0 {
		return fmt.Errorf("%s has a record but no holder", addr)
	}
	for i, h := range r.holders {
		if a.services[h.name] != h || !slices.Contains(h.addrs, r) {
			return fmt.Errorf("%s is held by %q, which does not hold it", addr, h.name)
		}
		if i > 0 && r.holders[i-1].name >= h.name {
			return fmt.Errorf("%s: holders not sorted and unique", addr)
		}
		if h.share != r.share {
			return fmt.Errorf("%s: holder %q shares as %+v, the address as %+v", addr, h.name, h.share, r.share)
		}
	}
	if err := slowSharable(r); err != nil {
		return fmt.Errorf("%s: %v", addr, err)
	}
	if want := slowPoolOf(a.pools, addr); r.pool != want {
		return fmt.Errorf("%s attributed to %s, want %s", addr, nameOf(r.pool), nameOf(want))
	}
	if r.pool != nil && r.last != r.pool.Name {
		return fmt.Errorf("%s in pool %q, last pool %q", addr, r.pool.Name, r.last)
	}
	return nil
}

func nameOf(p *pool) string {
	if p == nil {
		return "no pool"
	}
	return fmt.Sprintf("pool %q", p.Name)
}

// slowSharable checks the sharing rules between every pair of r's holders.
func slowSharable(r *record) error {
	for i, x := range r.holders {
		for _, y := range r.holders[i+1:] {
			switch {
			case x.share.key == "" || x.share.key != y.share.key:
				return fmt.Errorf("%q and %q share without a common key", x.name, y.name)
			case x.share.local != y.share.local:
				return fmt.Errorf("%q and %q share with Local and Cluster policies", x.name, y.name)
			case x.share.local && x.share.selector != y.share.selector:
				return fmt.Errorf("%q and %q share with different endpoints", x.name, y.name)
			}
			for _, p := range x.ports {
				if slices.Contains(y.ports, p) {
					return fmt.Errorf("%q and %q share port %s", x.name, y.name, p)
				}
			}
		}
	}
	return nil
}

// slowPoolOf returns the first pool containing addr, scanning every range.
func slowPoolOf(pools []*pool, addr netip.Addr) *pool {
	for _, p := range pools {
		for _, r := range p.Ranges {
			if r.Contains(addr) {
				return p
			}
		}
	}
	return nil
}

func (a *Allocator) verifyPool(p *pool) error {
	for i := range p.fams {
		pf := &p.fams[i]
		var assigned uint64
		for _, r := range a.addrs {
			if r.pool == p && FamilyOf(r.addr).index() == i {
				assigned++
				if pf.free != nil && pf.free.isFree(r.addr) {
					return fmt.Errorf("pool %q: %s is held and free", p.Name, r.addr)
				}
			}
		}
		if assigned != pf.assigned {
			return fmt.Errorf("pool %q: %d assigned, counted %d", p.Name, assigned, pf.assigned)
		}
		if (pf.free != nil) != (p.enabled && len(pf.ranges) > 0) {
			return fmt.Errorf("pool %q: free space present %t, enabled %t", p.Name, pf.free != nil, p.enabled)
		}
		for addr := range a.reserved {
			if a.poolOf(addr) == p && FamilyOf(addr).index() == i && pf.free != nil && pf.free.isFree(addr) {
				return fmt.Errorf("pool %q: %s is reserved and free", p.Name, addr)
			}
		}
		if pf.free != nil {
			if err := verifySpace(pf.free); err != nil {
				return fmt.Errorf("pool %q: %v", p.Name, err)
			}
		}
	}
	return nil
}

// verifySpace checks that the spans are ordered, disjoint, not adjacent and
// add up to avail.
func verifySpace(s *space) error {
	var sum u128
	all := false
	var prev span
	first := true
	var err error
	s.spans.Ascend(func(sp span) bool {
		switch {
		case sp.hi.less(sp.lo):
			err = fmt.Errorf("span %v is reversed", sp)
		case !first && !prev.hi.next().less(sp.lo):
			err = fmt.Errorf("spans %v and %v touch or overlap", prev, sp)
		}
		n, whole := sp.size()
		var carry bool
		sum, carry = sum.add(n)
		all = all || whole || carry
		prev, first = sp, false
		return err == nil
	})
	if err == nil && (sum != s.avail || all != s.all) {
		err = fmt.Errorf("spans hold %v addresses (2^128: %t), avail says %v (%t)", Count(sum), all, Count(s.avail), s.all)
	}
	return err
}

// small reports whether every pool of a is small enough for slowStats.
func small(a *Allocator) bool {
	for _, p := range a.pools {
		for _, r := range p.Ranges {
			if r.Size().Cmp(CountOf(slowLimit)) > 0 {
				return false
			}
		}
	}
	return true
}

// slowStats recounts the statistics by walking every address of every pool
// (which must be small).
func slowStats(t testing.TB, a *Allocator) []PoolStats {
	t.Helper()
	var stats []PoolStats
	for _, p := range a.sorted {
		for _, f := range []Family{IPv4, IPv6} {
			var st PoolStats
			has := false
			for _, r := range p.Ranges {
				if r.Family() != f {
					continue
				}
				has = true
				if r.Size().Cmp(CountOf(slowLimit)) > 0 {
					t.Fatalf("pool %q is too large for the slow reference", p.Name)
				}
				for addr := r.From; addr.IsValid() && addr.Compare(r.To) <= 0; addr = addr.Next() {
					st.Total = st.Total.Add(CountOf(1))
					rec := a.addrs[addr]
					switch {
					case rec != nil && slowPoolOf(a.pools, addr) == p:
						st.Assigned = st.Assigned.Add(CountOf(1))
					case rec == nil && p.enabled && !(p.AvoidBuggyIPs && isBuggy(addr)):
						st.Available = st.Available.Add(CountOf(1))
					}
				}
			}
			if has {
				st.Pool, st.Family = p.Name, f
				stats = append(stats, st)
			}
		}
	}
	return stats
}

// slowLowestFree returns the lowest address of family f in p that is free
// and allocatable, walking the pool.
func slowLowestFree(a *Allocator, p *pool, f Family) (netip.Addr, bool) {
	rs := slices.Clone(p.fam(f).ranges)
	for _, r := range rs {
		for addr := r.From; addr.IsValid() && addr.Compare(r.To) <= 0; addr = addr.Next() {
			if a.addrs[addr] == nil && p.allocatable(addr) {
				return addr, true
			}
		}
	}
	return netip.Addr{}, false
}

// state is a copy of everything observable in an Allocator, to check that
// a failed call changed nothing.
type state struct {
	services []serviceState
	stats    []PoolStats
	free     [][]Range // per pool and family, in precedence order
}

type serviceState struct {
	name  string
	share share
	ports []Port
	addrs []addrState
}

type addrState struct {
	addr       netip.Addr
	pool, last string
	holders    []string
}

func snapshot(a *Allocator) state {
	var st state
	for name, s := range a.services {
		ss := serviceState{name: name, share: s.share, ports: slices.Clone(s.ports)}
		for _, r := range s.addrs {
			ss.addrs = append(ss.addrs, addrState{r.addr, r.poolName(), r.last, r.holderNames(nil)})
		}
		st.services = append(st.services, ss)
	}
	slices.SortFunc(st.services, func(x, y serviceState) int { return strings.Compare(x.name, y.name) })
	st.stats = a.Stats()
	for _, p := range a.pools {
		for i := range p.fams {
			if pf := p.fams[i]; pf.free != nil {
				st.free = append(st.free, spansOf(pf.free))
			}
		}
	}
	return st
}

// dump renders the state of a as text, for messages and diffs.
func dump(a *Allocator) string { return dumpOf(snapshot(a)) }

func dumpOf(st state) string {
	var b strings.Builder
	for _, s := range st.services {
		fmt.Fprintf(&b, "service %s %+v %v:", s.name, s.share, s.ports)
		for _, r := range s.addrs {
			fmt.Fprintf(&b, " %s(%s,last=%s,holders=%v)", r.addr, r.pool, r.last, r.holders)
		}
		b.WriteString("\n")
	}
	for _, s := range st.stats {
		fmt.Fprintf(&b, "stats %+v\n", s)
	}
	for _, f := range st.free {
		fmt.Fprintf(&b, "free %v\n", f)
	}
	return b.String()
}

// spansOf lists the free spans of s as ranges, for tests.
func spansOf(s *space) []Range {
	var rs []Range
	s.spans.Ascend(func(sp span) bool {
		rs = append(rs, Range{From: s.addr(sp.lo), To: s.addr(sp.hi)})
		return true
	})
	return rs
}

func TestVerifyCatchesCorruption(t *testing.T) {
	a := New()
	a.SetPools([]Pool{{Name: "p", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/30")}})
	if _, err := a.Allocate(Request{Service: "ns/a", Families: []Family{IPv4}}); err != nil {
		t.Fatal(err)
	}
	if err := a.verify(); err != nil {
		t.Fatalf("verify() on a sound state: %v", err)
	}
	a.byName["p"].fams[0].assigned++
	if err := a.verify(); err == nil {
		t.Fatal("verify() missed a wrong assigned count")
	}
	a.byName["p"].fams[0].assigned--
	a.byName["p"].fams[0].free.put(netip.MustParseAddr("10.0.0.0"))
	if err := a.verify(); err == nil {
		t.Fatal("verify() missed an address both held and free")
	}
}
