package v1alpha1_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// TestRangeOrderMatchesNetip checks the CEL rule that refuses a range ending before it starts
// against netip on random ranges: the rule compares addresses bit by bit with cidr(), so
// ends that first differ at every bit position, in both families and in the spellings users
// write (canonical, upper case, fully expanded), must be judged exactly as netip judges them.
func TestRangeOrderMatchesNetip(t *testing.T) {
	client := dynamicClient(t)
	const seed = 20260101
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)

	const pools, perPool = 8, 64 // perPool is the CRD's maxItems for spec.addresses
	for p := range pools {
		var ranges []string
		var want []string // fields of the ranges the server must refuse
		seen := map[string]bool{}
		for len(ranges) < perPool {
			from, to := randomPair(rng)
			r := spell(rng, from) + "-" + spell(rng, to)
			if seen[r] {
				continue
			}
			seen[r] = true
			if from.Compare(to) > 0 {
				want = append(want, fmt.Sprintf("spec.addresses[%d]", len(ranges)))
			}
			ranges = append(ranges, r)
		}
		obj := newObject(t, "IPPool", fmt.Sprintf("ranges-%d", p), `spec: {addresses: ["`+strings.Join(ranges, `", "`)+`"]}`)
		_, err := create(t, client, obj, true)

		var got []string
		if err != nil {
			var status apierrors.APIStatus
			if !errors.As(err, &status) || !apierrors.IsInvalid(err) || status.Status().Details == nil {
				t.Fatalf("pool %d: refused with %v, want an Invalid error", p, err)
			}
			for _, c := range status.Status().Details.Causes {
				if !strings.Contains(c.Message, "ends before it starts") {
					t.Errorf("pool %d: unexpected cause %s: %s", p, c.Field, c.Message)
					continue
				}
				got = append(got, c.Field)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			for _, f := range symmetricDifference(want, got) {
				var i int
				fmt.Sscanf(f, "spec.addresses[%d]", &i)
				t.Errorf("pool %d: %s %q: refused=%v, netip says from > to is %v",
					p, f, ranges[i], slices.Contains(got, f), slices.Contains(want, f))
			}
		}
	}
}

// randomPair returns two addresses of one family that agree on a random number of leading
// bits, so that every bit position is where they first differ in some pair; one pair in
// eight is equal.
func randomPair(rng *rand.Rand) (netip.Addr, netip.Addr) {
	for {
		size := 4
		if rng.IntN(2) == 0 {
			size = 16
		}
		a, b := make([]byte, size), make([]byte, size)
		for i := range a {
			a[i], b[i] = byte(rng.UintN(256)), byte(rng.UintN(256))
		}
		if rng.IntN(8) == 0 {
			copy(b, a)
		} else {
			// Copy a's first `same` bits into b.
			same := rng.IntN(size * 8)
			for bit := range same {
				mask := byte(0x80) >> (bit % 8)
				b[bit/8] = b[bit/8]&^mask | a[bit/8]&mask
			}
		}
		from, _ := netip.AddrFromSlice(a)
		to, _ := netip.AddrFromSlice(b)
		// CEL's ip() refuses IPv4-mapped IPv6 addresses; those are covered by the table.
		if from.Is4In6() || to.Is4In6() {
			continue
		}
		return from, to
	}
}

// spell writes an address the way a user might: IPv4 canonically (CEL refuses leading zeros),
// IPv6 canonically, in upper case or fully expanded.
func spell(rng *rand.Rand, a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	switch rng.IntN(3) {
	case 0:
		return strings.ToUpper(a.String())
	case 1:
		return a.StringExpanded()
	default:
		return a.String()
	}
}

func symmetricDifference(a, b []string) []string {
	var d []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			d = append(d, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			d = append(d, x)
		}
	}
	return d
}
