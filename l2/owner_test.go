package l2

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func TestOwnerEmptyCandidates(t *testing.T) {
	for _, cands := range [][]string{nil, {}} {
		if got := Owner(netip.MustParseAddr("198.51.100.200"), cands); got != "" {
			t.Errorf("Owner(%q) = %q, want \"\"", cands, got)
		}
	}
}

func TestOwnerSingleCandidate(t *testing.T) {
	if got := Owner(netip.MustParseAddr("2001:db8::1"), []string{"node-a"}); got != "node-a" {
		t.Errorf("Owner = %q, want node-a", got)
	}
}

// TestOwnerGolden pins owners computed independently (Python: the smallest
// int.from_bytes(hashlib.sha256((node + "#" + key).encode()).digest()[:8], "big")): a change
// here means speakers of different versions would disagree about who owns an IP during a
// rolling upgrade.
func TestOwnerGolden(t *testing.T) {
	nodes := []string{"node-a", "node-b", "node-c"}
	for _, tc := range []struct {
		key  string
		want string
	}{
		{"198.51.100.200", "node-b"},
		{"198.51.100.201", "node-a"},
		{"198.51.100.202", "node-a"},
		{"198.51.100.203", "node-b"},
		{"2001:db8::1", "node-b"},
		{"2001:db8::2", "node-b"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			if got := Owner(netip.MustParseAddr(tc.key), nodes); got != tc.want {
				t.Errorf("Owner(%s) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func TestOwnerIgnoresCandidateOrderAndZone(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		key := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		want := Owner(key, nodes)
		shuffled := slices.Clone(nodes)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := Owner(key, shuffled); got != want {
			t.Fatalf("Owner(%s, %q) = %q, but %q with %q", key, shuffled, got, want, nodes)
		}
	}
	key := netip.MustParseAddr("fe80::1")
	if a, b := Owner(key, nodes), Owner(key.WithZone("eth0"), nodes); a != b {
		t.Errorf("Owner(fe80::1) = %q but Owner(fe80::1%%eth0) = %q", a, b)
	}
}

func TestOwnerSpread(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []string
		keys  []netip.Addr
	}{
		{"300 IPv4 keys over 3 nodes", []string{"node-a", "node-b", "node-c"}, keys4(300)},
		{"300 IPv6 keys over 3 nodes", []string{"node-a", "node-b", "node-c"}, keys6(300)},
		{"1000 IPv4 keys over 10 nodes", names("worker-", 10), keys4(1000)},
		// The e2e spread test: 30 Services from the lab's L2 pool on the lab's nodes. With
		// 30 keys some node gets more than 15 with probability ~6% (binomial tail), so this
		// pins the lab's names and pool rather than claiming it for any.
		{"30 lab IPv4 keys over the lab's 3 nodes", []string{"node1", "node2", "node3"}, keysFrom("198.51.100.200", 30)},
		{"30 lab IPv6 keys over the lab's 3 nodes", []string{"node1", "node2", "node3"}, keysFrom("2001:db8:100::200", 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count := map[string]int{}
			for _, k := range tc.keys {
				count[Owner(k, tc.nodes)]++
			}
			fair := len(tc.keys) / len(tc.nodes)
			for _, n := range tc.nodes {
				// A fair share, within a wide margin: at least half of it, never more than
				// half of all keys.
				if count[n] < fair/2 || count[n] > len(tc.keys)/2 {
					t.Errorf("node %s owns %d of %d keys (fair share %d); all: %v", n, count[n], len(tc.keys), fair, count)
				}
			}
		})
	}
}

func TestOwnerStability(t *testing.T) {
	nodes := names("node-", 5)
	keys := append(keys4(500), keys6(500)...)
	before := map[netip.Addr]string{}
	for _, k := range keys {
		before[k] = Owner(k, nodes)
	}
	for i, gone := range nodes {
		t.Run("without "+gone, func(t *testing.T) {
			rest := slices.Delete(slices.Clone(nodes), i, i+1)
			moved := 0
			for _, k := range keys {
				got := Owner(k, rest)
				switch {
				case before[k] == gone:
					moved++
					if got == gone {
						t.Fatalf("%s still owned by the removed %s", k, gone)
					}
				case got != before[k]:
					t.Errorf("%s moved from %s to %s although %s was removed", k, before[k], got, gone)
				}
			}
			if moved == 0 {
				t.Errorf("%s owned no key", gone)
			}
		})
	}
	t.Run("a node joins", func(t *testing.T) {
		more := append(slices.Clone(nodes), "node-new")
		for _, k := range keys {
			if got := Owner(k, more); got != before[k] && got != "node-new" {
				t.Errorf("%s moved from %s to %s when node-new joined", k, before[k], got)
			}
		}
	})
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	key := netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
	nodes := names("a-rather-long-kubernetes-node-name-", 10)
	if n := testing.AllocsPerRun(100, func() { Owner(key, nodes) }); n != 0 {
		t.Errorf("Owner allocates %.0f times per call, want 0", n)
	}
}

func BenchmarkOwner(b *testing.B) {
	key := netip.MustParseAddr("198.51.100.200")
	nodes := names("node-", 10)
	for b.Loop() {
		Owner(key, nodes)
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func keys4(n int) []netip.Addr { return keysFrom("198.51.100.0", n) }

func keys6(n int) []netip.Addr { return keysFrom("2001:db8::100", n) }

// keysFrom returns n consecutive addresses from first.
func keysFrom(first string, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := netip.MustParseAddr(first)
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}
