package allocator

import (
	"math/bits"
	"net/netip"
)

// u128 is an unsigned 128-bit integer. It is the coordinate of an address
// inside its family (IPv4 addresses use only the low 32 bits) and the
// representation of [Count] (the same layout, so they convert).
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) isZero() bool { return a.hi == 0 && a.lo == 0 }

// add returns a+b and whether the sum overflowed 128 bits.
func (a u128) add(b u128) (u128, bool) {
	lo, carry := bits.Add64(a.lo, b.lo, 0)
	hi, carry := bits.Add64(a.hi, b.hi, carry)
	return u128{hi, lo}, carry != 0
}

// sub returns a-b and whether it borrowed (b > a).
func (a u128) sub(b u128) (u128, bool) {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	hi, borrow := bits.Sub64(a.hi, b.hi, borrow)
	return u128{hi, lo}, borrow != 0
}

// next returns a+1, wrapping at 2^128.
func (a u128) next() u128 {
	v, _ := a.add(u128{0, 1})
	return v
}

// prev returns a-1, wrapping at 0.
func (a u128) prev() u128 {
	v, _ := a.sub(u128{0, 1})
	return v
}

// addrValue returns a as an integer of its family.
func addrValue(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var v u128
	for i := range 8 {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[i+8])
	}
	return v
}

// addrFromValue is the inverse of addrValue for family f. For IPv4 only the
// low 32 bits of v are used.
func addrFromValue(f Family, v u128) netip.Addr {
	if f == IPv4 {
		return netip.AddrFrom4([4]byte{byte(v.lo >> 24), byte(v.lo >> 16), byte(v.lo >> 8), byte(v.lo)})
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(v.hi >> (8 * i))
		b[15-i] = byte(v.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// Count is an exact number of addresses, from 0 to 2^128-1. The zero value
// is 0.
//
// Arithmetic saturates instead of wrapping: Add stops at 2^128-1 and Sub at
// 0. The only pool whose size does not fit is one covering the whole IPv6
// space (::/0, or ::/1 and 8000::/1: 2^128 addresses); its Total, and its
// Available while nothing is held in it, are reported as 2^128-1. Every
// other figure is exact.
type Count struct{ hi, lo uint64 }

// CountOf returns n as a Count.
func CountOf(n uint64) Count { return Count{0, n} }

// maxCount is 2^128-1, the value at which Add saturates.
func maxCount() Count { return Count{^uint64(0), ^uint64(0)} }

// IsZero reports whether c is 0.
func (c Count) IsZero() bool { return u128(c).isZero() }

// Add returns c+d, or 2^128-1 if the sum does not fit.
func (c Count) Add(d Count) Count {
	v, overflow := u128(c).add(u128(d))
	if overflow {
		return maxCount()
	}
	return Count(v)
}

// Sub returns c-d, or 0 if d > c.
func (c Count) Sub(d Count) Count {
	v, borrow := u128(c).sub(u128(d))
	if borrow {
		return Count{}
	}
	return Count(v)
}

// Cmp returns -1, 0 or +1 as c is less than, equal to or greater than d.
func (c Count) Cmp(d Count) int { return u128(c).cmp(u128(d)) }

// Equal reports whether c == d. (It also lets go-cmp compare Counts.)
func (c Count) Equal(d Count) bool { return c == d }

// Uint64 returns c as a uint64 and whether it fits; when it does not, the
// result is the largest uint64.
func (c Count) Uint64() (uint64, bool) {
	if c.hi != 0 {
		return ^uint64(0), false
	}
	return c.lo, true
}

// Float64 returns c rounded to the nearest float64, for metrics.
func (c Count) Float64() float64 {
	return float64(c.hi)*(1<<64) + float64(c.lo)
}

// String returns c in decimal, e.g. "18446744073709551616" for an IPv6 /64.
func (c Count) String() string {
	var buf [39]byte // 2^128-1 has 39 digits
	i := len(buf)
	hi, lo := c.hi, c.lo
	for {
		var r uint64
		hi, r = hi/10, hi%10
		lo, r = bits.Div64(r, lo, 10)
		i--
		buf[i] = byte('0' + r)
		if hi == 0 && lo == 0 {
			return string(buf[i:])
		}
	}
}
