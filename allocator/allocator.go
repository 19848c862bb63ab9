package allocator

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Allocator holds the pools and who holds which address. It does no I/O and
// is not safe for concurrent use: the controller calls it from one goroutine
// (or under one lock).
type Allocator struct {
	pools  []*pool          // valid pools, in precedence order
	byName map[string]*pool // the same, by name
	auto   []*pool          // enabled auto-assign pools in allocation order
	sorted []*pool          // all pools by name, for Stats

	addrs    map[netip.Addr]*record // every held address
	services map[string]*service    // every Service holding an address
	byKey    map[string][]*record   // held addresses by sharing key, sorted
	reserved map[netip.Addr]string  // never handed out, with why

	scratch []*pool // candidate pools, reused between calls
}

// New returns an Allocator without pools or assignments.
func New() *Allocator {
	return &Allocator{
		byName:   map[string]*pool{},
		addrs:    map[netip.Addr]*record{},
		services: map[string]*service{},
		byKey:    map[string][]*record{},
	}
}

// Report is what SetPools found in a pool set. Every list is complete (not
// a difference from the previous call) and sorted.
type Report struct {
	Invalid  []InvalidPool // pools ignored entirely
	Overlaps []Overlap     // overlapping pools; each Overlap.Pool is disabled
	Outside  []Outside     // addresses in use that are in no pool
}

// InvalidPool is a pool SetPools ignored.
type InvalidPool struct {
	Pool string
	Err  error
}

// Overlap reports that Pool overlaps With, which has precedence, on Range
// (the lowest range they have in common). Pool is disabled: the allocator
// draws no new address from it, and keeps the addresses already held in it.
type Overlap struct {
	Pool, With string
	Range      Range
}

// Outside is an address held by Services although it is in no pool: the
// pool shrank or was deleted, or the address was restored from a Service
// that had it before. Pool is the last pool that contained it ("" if none
// did while the allocator knew it), so a shrunk pool can be flagged.
type Outside struct {
	Addr     netip.Addr
	Pool     string
	Services []string
}

// Disabled returns the names of the pools disabled by an overlap.
func (r Report) Disabled() []string {
	var names []string
	for _, o := range r.Overlaps {
		if !slices.Contains(names, o.Pool) {
			names = append(names, o.Pool)
		}
	}
	slices.Sort(names)
	return names
}

// SetPools replaces the pool set. Held addresses are never dropped: each is
// attributed again to the pool that now contains it, or reported as
// Outside.
//
// The order of pools is their precedence when they overlap: a pool that
// overlaps any pool before it is disabled and reported. The controller
// should pass pools oldest first (creation time, then name), so that a new
// pool overlapping an old one cannot take over its addresses. A pool that
// fails Validate, or repeats an earlier name, is ignored and reported.
func (a *Allocator) SetPools(pools []Pool) Report {
	var rep Report
	a.pools = a.pools[:0:0]
	a.byName = make(map[string]*pool, len(pools))
	for _, p := range pools {
		err := p.Validate()
		if err == nil && a.byName[p.Name] != nil {
			err = fmt.Errorf("pool %q is listed twice", p.Name)
		}
		if err != nil {
			rep.Invalid = append(rep.Invalid, InvalidPool{Pool: p.Name, Err: err})
			continue
		}
		cp := compilePool(p)
		for _, q := range a.pools {
			if r, ok := firstOverlap(cp, q); ok {
				rep.Overlaps = append(rep.Overlaps, Overlap{Pool: cp.Name, With: q.Name, Range: r})
				if cp.enabled {
					cp.enabled, cp.overlap = false, q.Name
				}
			}
		}
		a.pools = append(a.pools, cp)
		a.byName[cp.Name] = cp
	}

	a.auto = a.auto[:0:0]
	for _, p := range a.pools {
		if !p.enabled {
			continue
		}
		for i := range p.fams {
			if pf := &p.fams[i]; len(pf.ranges) > 0 {
				pf.free = newSpace(pf.ranges[0].Family(), p.AvoidBuggyIPs, pf.ranges)
			}
		}
		if p.AutoAssign {
			a.auto = append(a.auto, p)
		}
	}
	slices.SortStableFunc(a.auto, autoOrder)
	a.sorted = slices.Clone(a.pools)
	slices.SortFunc(a.sorted, func(p, q *pool) int { return strings.Compare(p.Name, q.Name) })

	for _, r := range a.addrs {
		a.attribute(r)
	}
	for addr := range a.reserved {
		a.reserve(addr)
	}
	rep.Outside = a.Outside()
	return rep
}

// Outside lists the held addresses that are in no pool, by address.
func (a *Allocator) Outside() []Outside {
	var out []Outside
	for _, r := range a.addrs {
		if r.pool == nil {
			out = append(out, Outside{Addr: r.addr, Pool: r.last, Services: r.holderNames(nil)})
		}
	}
	slices.SortFunc(out, func(x, y Outside) int { return x.Addr.Compare(y.Addr) })
	return out
}

// LastPool returns the last pool that contained a held address ("" when none did while the
// allocator knew it, or when the address is not held).
func (a *Allocator) LastPool(addr netip.Addr) string {
	if r := a.addrs[addr]; r != nil {
		return r.last
	}
	return ""
}

// PoolStats are the figures of one family of one pool.
type PoolStats struct {
	Pool   string
	Family Family
	// Total counts every address of the pool's ranges of the family.
	Total Count
	// Assigned counts the held addresses attributed to the pool. An address
	// in two overlapping pools counts for the one of higher precedence.
	Assigned Count
	// Available counts the addresses the allocator could still hand out:
	// 0 for a disabled pool, and never the .0/.255 addresses of an
	// AvoidBuggyIPs pool. So Assigned+Available <= Total.
	Available Count
}

// Stats returns the figures of every pool, by pool name then family (IPv4
// first), for each family the pool has addresses of.
func (a *Allocator) Stats() []PoolStats {
	var stats []PoolStats
	for _, p := range a.sorted {
		for _, f := range [...]Family{IPv4, IPv6} {
			pf := p.fam(f)
			if len(pf.ranges) == 0 {
				continue
			}
			st := PoolStats{Pool: p.Name, Family: f, Total: pf.total, Assigned: CountOf(pf.assigned)}
			if pf.free != nil {
				st.Available = pf.free.available()
			}
			stats = append(stats, st)
		}
	}
	return stats
}

// Assignment returns what service holds, if anything.
func (a *Allocator) Assignment(service string) (Assignment, bool) {
	s := a.services[service]
	if s == nil {
		return Assignment{}, false
	}
	return s.assignment(), true
}

// Holders returns the Services holding addr, sorted; none if it is free.
func (a *Allocator) Holders(addr netip.Addr) []string {
	r := a.addrs[addr]
	if r == nil {
		return nil
	}
	return r.holderNames(nil)
}

// Release forgets what service holds and frees the addresses no other
// Service shares. It reports whether service held anything.
func (a *Allocator) Release(service string) bool {
	return a.services[service] != nil && a.commit(service, share{}, nil, nil) == nil
}
