package allocator

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
)

// Family is an IP address family. The zero value is not a family.
type Family uint8

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of a, or 0 if a is not valid.
func FamilyOf(a netip.Addr) Family {
	switch {
	case a.Is4():
		return IPv4
	case a.Is6():
		return IPv6
	}
	return 0
}

// String returns "IPv4" or "IPv6" (the spelling of Kubernetes' ipFamilies).
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// valid reports whether f is IPv4 or IPv6.
func (f Family) valid() bool { return f == IPv4 || f == IPv6 }

// index returns 0 for IPv4 and 1 for IPv6, for arrays indexed by family.
func (f Family) index() int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// bitLen returns the address length of f in bits.
func (f Family) bitLen() int {
	if f == IPv6 {
		return 128
	}
	return 32
}

// Range is the inclusive range of addresses From..To of one family. The zero
// value is not valid; see [Range.IsValid].
type Range struct {
	From, To netip.Addr
}

// PrefixRange returns the range covered by p (its host bits are ignored),
// or the zero Range if p is not valid.
func PrefixRange(p netip.Prefix) Range {
	if !p.IsValid() {
		return Range{}
	}
	p = p.Masked()
	f := FamilyOf(p.Addr())
	host := f.bitLen() - p.Bits()
	to := addrValue(p.Addr())
	to.hi |= lowBits(host - 64)
	to.lo |= lowBits(host)
	return Range{From: p.Addr(), To: addrFromValue(f, to)}
}

// lowBits returns a uint64 with its n lowest bits set (n clamped to 0..64).
func lowBits(n int) uint64 {
	switch {
	case n <= 0:
		return 0
	case n >= 64:
		return ^uint64(0)
	}
	return 1<<n - 1
}

// IsValid reports whether r is a usable range: both ends valid addresses of
// the same family, without zone, not IPv4-mapped IPv6, and From <= To.
func (r Range) IsValid() bool { return r.check() == nil }

func (r Range) check() error {
	if err := checkAddr(r.From); err != nil {
		return err
	}
	if err := checkAddr(r.To); err != nil {
		return err
	}
	if FamilyOf(r.From) != FamilyOf(r.To) {
		return fmt.Errorf("%s and %s are of different families", r.From, r.To)
	}
	if r.To.Less(r.From) {
		return fmt.Errorf("%s is after %s", r.From, r.To)
	}
	return nil
}

// checkAddr reports why a cannot be a pool or service address.
func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("invalid address")
	case a.Zone() != "":
		return fmt.Errorf("%s has a zone", a)
	case a.Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 address", a)
	}
	return nil
}

// Family returns the family of r.
func (r Range) Family() Family { return FamilyOf(r.From) }

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool {
	return FamilyOf(a) == r.Family() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// Overlaps reports whether r and o have an address in common.
func (r Range) Overlaps(o Range) bool {
	return r.Family() == o.Family() && r.From.Compare(o.To) <= 0 && o.From.Compare(r.To) <= 0
}

// Size returns the number of addresses in r; for ::/0 it saturates at
// 2^128-1 (see [Count]).
func (r Range) Size() Count {
	d, _ := addrValue(r.To).sub(addrValue(r.From))
	return Count(d).Add(CountOf(1))
}

// Prefix returns the prefix equal to r, if r is exactly one CIDR block.
func (r Range) Prefix() (netip.Prefix, bool) {
	d, borrow := addrValue(r.To).sub(addrValue(r.From))
	if borrow || !r.IsValid() {
		return netip.Prefix{}, false
	}
	// r is a block iff To-From is 2^k-1 and From is aligned on 2^k.
	size, _ := d.add(u128{0, 1})
	if d.hi&size.hi != 0 || d.lo&size.lo != 0 {
		return netip.Prefix{}, false
	}
	from := addrValue(r.From)
	if from.hi&d.hi != 0 || from.lo&d.lo != 0 {
		return netip.Prefix{}, false
	}
	k := bits.OnesCount64(d.hi) + bits.OnesCount64(d.lo)
	return netip.PrefixFrom(r.From, r.Family().bitLen()-k), true
}

// String returns r in the shortest form ParseRange accepts: a single
// address, a CIDR when r is exactly one block, or "from-to".
func (r Range) String() string {
	switch {
	case !r.IsValid():
		return "invalid Range"
	case r.From == r.To:
		return r.From.String()
	}
	if p, ok := r.Prefix(); ok {
		return p.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// ParseError is returned by ParseRange and ParseAddresses.
type ParseError struct {
	Input string // the text that was refused
	Err   error  // why
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid address range %q: %v", e.Input, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// ParseRange parses an address range written as a CIDR ("198.51.100.0/24",
// "2001:db8::/64"), as "from-to" (spaces around "-" are allowed; both ends
// of one family, from <= to) or as a single address. A CIDR with host bits
// set ("198.51.100.7/24") is refused rather than masked, as are zones and
// IPv4-mapped IPv6 addresses. Errors are of type *ParseError.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(strings.TrimSpace(s))
	if err != nil {
		return Range{}, &ParseError{Input: s, Err: err}
	}
	return r, nil
}

func parseRange(s string) (Range, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Range{}, err
		}
		if err := checkAddr(p.Addr()); err != nil {
			return Range{}, err
		}
		if m := p.Masked(); m != p {
			return Range{}, fmt.Errorf("host bits are set (the block is %s)", m)
		}
		return PrefixRange(p), nil
	}
	if from, to, ok := strings.Cut(s, "-"); ok {
		r := Range{}
		var err error
		if r.From, err = netip.ParseAddr(strings.TrimSpace(from)); err != nil {
			return Range{}, err
		}
		if r.To, err = netip.ParseAddr(strings.TrimSpace(to)); err != nil {
			return Range{}, err
		}
		return r, r.check()
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return Range{}, err
	}
	r := Range{From: a, To: a}
	return r, r.check()
}

// ParseAddresses parses the address list of one pool with ParseRange and
// also refuses ranges that overlap each other. The ranges are returned in
// the order given.
func ParseAddresses(list []string) ([]Range, error) {
	ranges := make([]Range, 0, len(list))
	for _, s := range list {
		r, err := ParseRange(s)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
	}
	if i, j, ok := firstOverlapWithin(ranges); ok {
		return nil, &ParseError{Input: list[j], Err: fmt.Errorf("overlaps %q", list[i])}
	}
	return ranges, nil
}

// firstOverlapWithin returns the indexes i < j of two overlapping ranges of
// rs, if any. The ranges must be valid.
func firstOverlapWithin(rs []Range) (i, j int, ok bool) {
	order := make([]int, len(rs))
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int { return compareRanges(rs[a], rs[b]) })
	// When ranges sorted by start overlap at all, two neighbours do.
	for k := 1; k < len(order); k++ {
		a, b := order[k-1], order[k]
		if rs[a].Overlaps(rs[b]) {
			return min(a, b), max(a, b), true
		}
	}
	return 0, 0, false
}

// compareRanges orders ranges by start (IPv4 first), then by end.
func compareRanges(a, b Range) int {
	return cmp.Or(a.From.Compare(b.From), a.To.Compare(b.To))
}
