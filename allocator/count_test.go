package allocator

import (
	"math"
	"testing"
)

func pow2(n int) Count {
	if n >= 64 {
		return Count{hi: 1 << (n - 64)}
	}
	return CountOf(1 << n)
}

func TestCountString(t *testing.T) {
	for _, tc := range []struct {
		c    Count
		want string
	}{
		{Count{}, "0"},
		{CountOf(7), "7"},
		{CountOf(math.MaxUint64), "18446744073709551615"},
		{pow2(64), "18446744073709551616"},
		{pow2(80), "1208925819614629174706176"},
		{maxCount(), "340282366920938463463374607431768211455"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("String() = %s, want %s", got, tc.want)
		}
	}
}

func TestCountArithmetic(t *testing.T) {
	t.Run("add carries into the high word", func(t *testing.T) {
		if got := CountOf(math.MaxUint64).Add(CountOf(1)); got != pow2(64) {
			t.Errorf("got %s", got)
		}
	})
	t.Run("add saturates at 2^128-1", func(t *testing.T) {
		if got := maxCount().Add(CountOf(1)); got != maxCount() {
			t.Errorf("got %s", got)
		}
		if got := pow2(127).Add(pow2(127)); got != maxCount() {
			t.Errorf("2^127+2^127 = %s", got)
		}
	})
	t.Run("sub borrows from the high word", func(t *testing.T) {
		if got := pow2(64).Sub(CountOf(1)); got != CountOf(math.MaxUint64) {
			t.Errorf("got %s", got)
		}
	})
	t.Run("sub saturates at 0", func(t *testing.T) {
		if got := CountOf(1).Sub(CountOf(2)); !got.IsZero() {
			t.Errorf("got %s", got)
		}
	})
	t.Run("cmp orders by the high word first", func(t *testing.T) {
		if pow2(64).Cmp(CountOf(math.MaxUint64)) != 1 || CountOf(3).Cmp(CountOf(4)) != -1 || pow2(90).Cmp(pow2(90)) != 0 {
			t.Error("wrong order")
		}
	})
	t.Run("uint64 reports whether it fits", func(t *testing.T) {
		if v, ok := CountOf(5).Uint64(); v != 5 || !ok {
			t.Errorf("Uint64() = %d, %t", v, ok)
		}
		if v, ok := pow2(64).Uint64(); v != math.MaxUint64 || ok {
			t.Errorf("Uint64() = %d, %t", v, ok)
		}
	})
	t.Run("float64", func(t *testing.T) {
		if got := pow2(80).Float64(); got != math.Pow(2, 80) {
			t.Errorf("got %g", got)
		}
	})
}

func TestAddrValueRoundTrip(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "198.51.100.7", "255.255.255.255", "::", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8:0:1:8000::"} {
		a := addr(s)
		if got := addrFromValue(FamilyOf(a), addrValue(a)); got != a {
			t.Errorf("%s round-trips to %s", a, got)
		}
	}
}
