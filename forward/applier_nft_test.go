package forward

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// kernelApplier returns an Applier on the real nft inside ns, with a settable clock.
func kernelApplier(t *testing.T, ns string) (*Applier, knftables.Interface, *fakeClock) {
	t.Helper()
	var nft knftables.Interface
	inNamespace(t, ns, func() {
		var err error
		if nft, err = NewInterface(); err != nil {
			t.Fatal(err)
		}
	})
	a := NewApplier(nft)
	clock := &fakeClock{t: a.now()}
	a.now = clock.now
	return a, nft, clock
}

func kernelSync(t *testing.T, ns string, a *Applier, rs *Ruleset) (SyncResult, error) {
	t.Helper()
	var res SyncResult
	var err error
	inNamespace(t, ns, func() { res, err = a.Sync(context.Background(), rs) })
	return res, err
}

func mustKernelSync(t *testing.T, ns string, a *Applier, in Input) SyncResult {
	t.Helper()
	res, err := kernelSync(t, ns, a, Render(in))
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return res
}

func countElements(t *testing.T, ns string, nft knftables.Interface, kind, name string) int {
	t.Helper()
	var n int
	inNamespace(t, ns, func() {
		els, err := nft.ListElements(context.Background(), kind, name)
		if err != nil {
			t.Fatalf("listing %s: %v", name, err)
		}
		n = len(els)
	})
	return n
}

// TestApplierInKernel runs the Applier against the kernel: a full sync, a one-Service change as
// a small transaction, a restart (a new Applier) replacing a table with leftovers in one
// transaction, a failed sync leaving the table as it was, and the removal of an affinity
// Service's chains and sets.
func TestApplierInKernel(t *testing.T) {
	ns := newNamespace(t, "applier")
	svcs, slices := manyServices(500, 5, 3)
	base := Input{Node: testNode, Services: svcs, EndpointSlices: slices, Options: DefaultOptions()}
	a, nft, _ := kernelApplier(t, ns)

	res := mustKernelSync(t, ns, a, base)
	if !res.Full || countElements(t, ns, nft, "map", frontendsMap(ipv4)) != 500*3 || countElements(t, ns, nft, "map", endpointsMap(ipv4, "tcp")) != 500*3*5 {
		t.Fatalf("first sync: %+v; want a full one with 1500 frontends and 7500 endpoint elements", res)
	}

	t.Run("one Service gaining an endpoint is a small transaction", func(t *testing.T) {
		in := base
		in.EndpointSlices = append([]*discoveryv1.EndpointSlice(nil), slices...)
		s := slices[42].DeepCopy()
		s.Endpoints = append(s.Endpoints, ep("198.19.255.1", otherNode, ready))
		in.EndpointSlices[42] = s
		res := mustKernelSync(t, ns, a, in)
		// 3 frontends from pick-5 to pick-6 (delete + add), 3 elements for slot 5, and pick-6
		// with its 6 rules (3 protocols, 2 families).
		if res.Full || res.Operations != 6+3+7 {
			t.Errorf("sync: %+v, want an incremental one of %d operations", res, 6+3+7)
		}
		if got := countElements(t, ns, nft, "map", endpointsMap(ipv4, "tcp")); got != 500*3*5+3 {
			t.Errorf("%d endpoint elements, want %d", got, 500*3*5+3)
		}
		mustKernelSync(t, ns, a, base)
	})

	t.Run("a restart replaces the table, leftovers included, in one transaction", func(t *testing.T) {
		nftIn(t, ns, "add chain inet ironlb leftover-chain ; add set inet ironlb leftover-set { type ipv4_addr ; } ; "+
			"add element inet ironlb frontends-v4 { 203.0.113.250 . tcp . 80 : goto pick-5 }")
		restarted, _, _ := kernelApplier(t, ns)
		res := mustKernelSync(t, ns, restarted, base)
		if !res.Full {
			t.Errorf("first sync of a new Applier: %+v, want a full one", res)
		}
		fresh := newNamespace(t, "applier-fresh")
		freshApplier, _, _ := kernelApplier(t, fresh)
		mustKernelSync(t, fresh, freshApplier, base)
		if got, want := nftIn(t, ns, "list", "table", "inet", "ironlb"), nftIn(t, fresh, "list", "table", "inet", "ironlb"); got != want {
			t.Errorf("after the restart the table differs from a fresh one:\n%s", firstDifference(got, want))
		}
	})

	t.Run("a failed sync leaves the table as it was", func(t *testing.T) {
		before := nftIn(t, ns, "list", "table", "inet", "ironlb")
		broken := Render(base)
		broken.addChain(knftables.Chain{Name: "broken"}, "ip daddr @no-such-set accept")
		other, _, _ := kernelApplier(t, ns)
		if _, err := kernelSync(t, ns, other, broken); err == nil {
			t.Fatal("sync of a broken ruleset succeeded")
		}
		if after := nftIn(t, ns, "list", "table", "inet", "ironlb"); after != before {
			t.Errorf("the failed full sync changed the table:\n%s", firstDifference(after, before))
		}
	})

	t.Run("an affinity Service going away: sets at once, chains after the grace period", func(t *testing.T) {
		b, _, clock := kernelApplier(t, ns)
		mustKernelSync(t, ns, b, scenarios["affinity"]())
		in := scenarios["affinity"]()
		in.Services = in.Services[:1]
		if res := mustKernelSync(t, ns, b, in); res.Full {
			t.Errorf("sync removing the Service: %+v, want an incremental one", res)
		}
		table := nftIn(t, ns, "list", "table", "inet", "ironlb")
		if !strings.Contains(table, "chain affinity-record-CFNCUIRY-default/sticky-default") || strings.Contains(table, "set affinity-NJ755NH5") {
			t.Errorf("right after: want the chains flushed but present and the sets gone:\n%s", table)
		}
		clock.advance(staleChainGrace)
		if res := mustKernelSync(t, ns, b, in); res.Operations != 2 {
			t.Errorf("sync after the grace period: %+v, want the 2 chains deleted", res)
		}
		if table := nftIn(t, ns, "list", "table", "inet", "ironlb"); strings.Contains(table, "sticky-default") {
			t.Errorf("after the grace period the Service's chains remain:\n%s", table)
		}
	})
}

// firstDifference shows where two listings start to differ.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return "line " + itoa(i+1) + ":\n got: " + g[i] + "\nwant: " + w[i]
		}
	}
	return "one listing is a prefix of the other (" + itoa(len(g)) + " vs " + itoa(len(w)) + " lines)"
}

// TestIncrementalInKernel replays TestIncrementalMatchesFull's transitions against the kernel:
// nft must accept every incremental transaction, and the sets and maps must end up with the
// elements a full sync gives.
func TestIncrementalInKernel(t *testing.T) {
	ns, fresh := newNamespace(t, "incremental"), newNamespace(t, "incremental-full")
	names := slices.Sorted(maps.Keys(scenarios))
	want := map[string][]string{}
	for _, to := range names {
		b, _, _ := kernelApplier(t, fresh)
		mustKernelSync(t, fresh, b, scenarios[to]())
		want[to] = tableElements(t, fresh)
	}
	for _, from := range names {
		for _, to := range names {
			a, _, _ := kernelApplier(t, ns)
			mustKernelSync(t, ns, a, scenarios[from]())
			if res := mustKernelSync(t, ns, a, scenarios[to]()); res.Full {
				t.Errorf("%s to %s: %+v, want an incremental sync", from, to, res)
			}
			if diff := cmp.Diff(want[to], tableElements(t, ns)); diff != "" {
				t.Errorf("%s to %s: elements (-full +incremental):\n%s", from, to, diff)
			}
		}
	}
}

// tableElements returns every element of every set and map of the table in ns, one string each
// ("set name: JSON"), sorted.
func tableElements(t *testing.T, ns string) []string {
	t.Helper()
	var doc struct {
		NFTables []map[string]struct {
			Name string            `json:"name"`
			Elem []json.RawMessage `json:"elem"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(nftIn(t, ns, "-j", "list", "table", "inet", TableName)), &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, entry := range doc.NFTables {
		for kind, obj := range entry {
			if kind != "set" && kind != "map" {
				continue
			}
			for _, e := range obj.Elem {
				out = append(out, obj.Name+": "+string(e))
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestRemoveInKernel: Remove deletes the table and leaves other tables alone, succeeds when
// there is no table, and the next Sync rebuilds the table in full.
func TestRemoveInKernel(t *testing.T) {
	ns := newNamespace(t, "remove")
	nftIn(t, ns, "add", "table", "ip", "kube-proxy")
	a, _, _ := kernelApplier(t, ns)
	mustKernelSync(t, ns, a, scenarios["cluster-policy"]())
	remove := func() {
		t.Helper()
		inNamespace(t, ns, func() {
			if err := a.Remove(context.Background()); err != nil {
				t.Fatalf("Remove: %v", err)
			}
		})
	}
	remove()
	if out := nftIn(t, ns, "list", "tables"); strings.Contains(out, TableName) || !strings.Contains(out, "kube-proxy") {
		t.Errorf("tables after Remove:\n%s\nwant kube-proxy's only", out)
	}
	remove() // no table: no error
	if res := mustKernelSync(t, ns, a, scenarios["cluster-policy"]()); !res.Full {
		t.Errorf("sync after Remove: %+v, want a full one", res)
	}
	if out := nftIn(t, ns, "list", "map", "inet", TableName, frontendsMap(ipv4)); !strings.Contains(out, "203.0.113.10") {
		t.Errorf("frontends after the sync that followed Remove:\n%s", out)
	}
}
