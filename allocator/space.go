package allocator

import (
	"net/netip"

	"github.com/google/btree"
)

// space is the free, allocatable space of one family of one enabled pool:
// a set of disjoint, non-adjacent spans in an ordered tree. Every operation
// costs O(log spans), whatever the size of the pool.
//
// Spans are in coordinates, not addresses. Normally the coordinate of an
// address is its integer value. For an IPv4 pool with AvoidBuggyIPs, the
// addresses ending in .0 and .255 are not allocatable at all, and the
// coordinate numbers only the others: c = (v>>8)*254 + (v&0xff) - 1. This
// keeps the free space a set of intervals (without it, a full pool would be
// fragmented at every /24 boundary) and makes "lowest free address" the
// start of the first span.
type space struct {
	family    Family
	skipBuggy bool
	spans     *btree.BTreeG[span] // ordered by hi
	// avail is the number of coordinates in spans; it is 2^128 (which
	// takes the 129th bit, all) only for a pool of the whole IPv6 space
	// with nothing held.
	avail u128
	all   bool
}

// span is an inclusive interval of free coordinates.
type span struct{ lo, hi u128 }

// size returns the number of coordinates in s, and true if that is 2^128.
func (s span) size() (u128, bool) {
	d, _ := s.hi.sub(s.lo)
	return d.add(u128{0, 1})
}

// btreeDegree is the degree of the free-span trees: 32 gives nodes of up to
// 63 spans, shallow trees and few allocations.
const btreeDegree = 32

// newSpace returns the space of family f made of ranges, which must be valid,
// of family f, sorted and disjoint from each other.
func newSpace(f Family, skipBuggy bool, ranges []Range) *space {
	s := &space{
		family:    f,
		skipBuggy: skipBuggy && f == IPv4,
		// Keyed by hi: taking the lowest address of a span leaves its hi
		// unchanged, so allocation replaces the item in place.
		spans: btree.NewG(btreeDegree, func(a, b span) bool { return a.hi.less(b.hi) }),
	}
	// ranges are sorted and disjoint; merge those that touch, so that spans
	// never do.
	var cur span
	have := false
	for _, r := range ranges {
		sp, ok := s.spanOf(r)
		switch {
		case !ok:
		case have && cur.hi.next() == sp.lo:
			cur.hi = sp.hi
		default:
			if have {
				s.insert(cur)
			}
			cur, have = sp, true
		}
	}
	if have {
		s.insert(cur)
	}
	return s
}

// spanOf returns the coordinates of the allocatable addresses of r.
func (s *space) spanOf(r Range) (span, bool) {
	from, to := addrValue(r.From), addrValue(r.To)
	if !s.skipBuggy {
		return span{from, to}, true
	}
	// Round From up and To down to allocatable addresses, within IPv4.
	switch from.lo & 0xff {
	case 0:
		from.lo++
	case 0xff:
		from.lo += 2
	}
	switch to.lo & 0xff {
	case 0xff:
		to.lo--
	case 0:
		if to.lo < 2 {
			return span{}, false
		}
		to.lo -= 2
	}
	if from.lo > 0xffffffff || to.lo < from.lo {
		return span{}, false
	}
	return span{buggyCoord(from.lo), buggyCoord(to.lo)}, true
}

// isBuggy reports whether a is an IPv4 address ending in .0 or .255, which
// some old equipment mistakes for a network or broadcast address.
func isBuggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 0xff
}

// buggyCoord numbers the IPv4 addresses that do not end in .0 or .255.
func buggyCoord(v uint64) u128 { return u128{0, (v>>8)*254 + v&0xff - 1} }

// coord returns the coordinate of a, or false if a is not allocatable in s
// (a buggy address in a space that skips them). a must be of s's family.
func (s *space) coord(a netip.Addr) (u128, bool) {
	if s.skipBuggy {
		if isBuggy(a) {
			return u128{}, false
		}
		return buggyCoord(addrValue(a).lo), true
	}
	return addrValue(a), true
}

// addr is the inverse of coord.
func (s *space) addr(c u128) netip.Addr {
	if s.skipBuggy {
		c = u128{0, c.lo/254<<8 | (c.lo%254 + 1)}
	}
	return addrFromValue(s.family, c)
}

// insert adds sp, which must not overlap or touch any span.
func (s *space) insert(sp span) {
	s.spans.ReplaceOrInsert(sp)
	n, all := sp.size()
	s.avail, _ = s.avail.add(n)
	s.all = all // only a span of the whole IPv6 space has 2^128 addresses
}

// available returns the number of free allocatable addresses, saturated
// at 2^128-1 (see Count).
func (s *space) available() Count {
	if s.all {
		return maxCount()
	}
	return Count(s.avail)
}

// dec and inc count a coordinate taken or put back.
func (s *space) dec() {
	s.avail = s.avail.prev()
	s.all = false
}

func (s *space) inc() {
	s.avail = s.avail.next()
	s.all = s.avail.isZero()
}

// lowest returns the lowest free address.
func (s *space) lowest() (netip.Addr, bool) {
	sp, ok := s.spans.Min()
	if !ok {
		return netip.Addr{}, false
	}
	return s.addr(sp.lo), true
}

// ceiling returns the first span whose hi is >= c.
func (s *space) ceiling(c u128) (span, bool) {
	var found span
	ok := false
	s.spans.AscendGreaterOrEqual(span{hi: c}, func(sp span) bool {
		found, ok = sp, true
		return false
	})
	return found, ok
}

// isFree reports whether a is free in s.
func (s *space) isFree(a netip.Addr) bool {
	c, ok := s.coord(a)
	if !ok {
		return false
	}
	sp, ok := s.ceiling(c)
	return ok && !c.less(sp.lo)
}

// take removes a from the free space, reporting whether it was free.
func (s *space) take(a netip.Addr) bool {
	c, ok := s.coord(a)
	if !ok {
		return false
	}
	sp, ok := s.ceiling(c)
	if !ok || c.less(sp.lo) {
		return false
	}
	switch {
	case sp.lo == c && sp.hi == c:
		s.spans.Delete(sp)
	case sp.lo == c:
		s.spans.ReplaceOrInsert(span{c.next(), sp.hi}) // same hi: in place
	case sp.hi == c:
		s.spans.Delete(sp)
		s.spans.ReplaceOrInsert(span{sp.lo, c.prev()})
	default:
		s.spans.ReplaceOrInsert(span{sp.lo, c.prev()})
		s.spans.ReplaceOrInsert(span{c.next(), sp.hi}) // same hi: in place
	}
	s.dec()
	return true
}

// put returns a to the free space, merging it with its neighbours, and
// reports whether it was added. a must be an address of the pool; put
// refuses one that is not allocatable or already free.
func (s *space) put(a netip.Addr) bool {
	c, ok := s.coord(a)
	if !ok {
		return false
	}
	// The first span ending at or after c-1 is the only possible left
	// neighbour; the one after it (or itself) the only right neighbour.
	var left, right span
	hasLeft, hasRight := false, false
	pivot := c.prev()
	if c.isZero() {
		pivot = c
	}
	free := false
	s.spans.AscendGreaterOrEqual(span{hi: pivot}, func(sp span) bool {
		switch {
		case !c.isZero() && sp.hi == pivot:
			left, hasLeft = sp, true
			return true
		case !c.less(sp.lo):
			free = true // sp contains c
		case sp.lo == c.next():
			right, hasRight = sp, true
		}
		return false
	})
	if free {
		return false
	}
	switch {
	case hasLeft && hasRight:
		s.spans.Delete(left)
		s.spans.ReplaceOrInsert(span{left.lo, right.hi})
	case hasLeft:
		s.spans.Delete(left)
		s.spans.ReplaceOrInsert(span{left.lo, c})
	case hasRight:
		s.spans.ReplaceOrInsert(span{c, right.hi})
	default:
		s.spans.ReplaceOrInsert(span{c, c})
	}
	s.inc()
	return true
}
