package forward

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// fakeClock is a settable clock for the Applier's stale-chain grace period.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newFakeApplier() (*knftables.Fake, *Applier, *fakeClock) {
	fake := knftables.NewFake(TableFamily, TableName)
	a := NewApplier(fake)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a.now = clock.now
	return fake, a, clock
}

func mustSync(t *testing.T, a *Applier, in Input) SyncResult {
	t.Helper()
	res, err := a.Sync(context.Background(), Render(in))
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return res
}

// TestIncrementalMatchesFull walks through every pair of scenarios: an incremental sync from
// one to the other must leave the table a full sync of the other builds (once the grace period
// for unreferenced chains has passed and one more sync deleted them), except for pick chains
// no longer used, which the Applier keeps on purpose.
func TestIncrementalMatchesFull(t *testing.T) {
	for fromName, from := range scenarios {
		for toName, to := range scenarios {
			t.Run(fromName+" to "+toName, func(t *testing.T) {
				fake, a, clock := newFakeApplier()
				mustSync(t, a, from())
				if res := mustSync(t, a, to()); res.Full {
					t.Errorf("second sync: %+v, want an incremental one", res)
				}
				clock.advance(staleChainGrace)
				mustSync(t, a, to())
				// Element order differs (the fake keeps insertion order); content must not.
				full := dumpOf(t, to())
				if diff := cmp.Diff(sortedLines(full), withoutUnusedPickChains(sortedLines(fake.Dump()), full)); diff != "" {
					t.Errorf("incremental sync left a table other than a full sync builds (-full +incremental):\n%s", diff)
				}
			})
		}
	}
}

// manyServices returns n LoadBalancer Services, each with a ClusterIP, an ingress IP, a
// NodePort and eps ready endpoints, spread round-robin over nodes nodes (this node first).
func manyServices(n, eps, nodes int) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		svcs = append(svcs, service(name, lb, nthAddr("198.18.0.0", i),
			[]corev1.ServicePort{tcpPort("http", 80, int32(30000+i))}, ingress(nthAddr("198.19.128.0", i))))
		var endpoints []discoveryv1.Endpoint
		for j := range eps {
			k := i*eps + j
			node := thisNode
			if k%nodes != 0 {
				node = fmt.Sprintf("node%d", k%nodes+1)
			}
			endpoints = append(endpoints, ep(nthAddr("198.19.0.0", k), node, ready))
		}
		slices = append(slices, slice(name, name+"-1", http, endpoints...))
	}
	return svcs, slices
}

// nthAddr returns base + i as an IPv4 address.
func nthAddr(base string, i int) string {
	var a, b, c, d int
	fmt.Sscanf(base, "%d.%d.%d.%d", &a, &b, &c, &d)
	v := a<<24 | b<<16 | c<<8 | d + i
	return fmt.Sprintf("%d.%d.%d.%d", v>>24&255, v>>16&255, v>>8&255, v&255)
}

// TestOneServiceChangeIsSmall: with 300 Services loaded (3 endpoints each, every Service with a
// ClusterIP, an ingress IP and a NodePort: 3 frontends), one Service changing costs the
// operations on its own elements only, whatever the number of Services.
func TestOneServiceChangeIsSmall(t *testing.T) {
	svcs, slices := manyServices(300, 3, 3)
	base := Input{Node: testNode, Services: svcs, EndpointSlices: slices, Options: DefaultOptions()}
	withEndpoint := func(i int, e discoveryv1.Endpoint) Input {
		in := base
		in.EndpointSlices = append([]*discoveryv1.EndpointSlice(nil), slices...)
		s := slices[i].DeepCopy()
		s.Endpoints = append(s.Endpoints, e)
		in.EndpointSlices[i] = s
		return in
	}
	for _, c := range []struct {
		name   string
		change Input
		ops    int // expected operations
	}{
		// 3 frontends move from pick-3 to pick-4 (delete + add each), 3 endpoint elements for
		// the new slot, and the new chain pick-4 with its 6 rules (3 protocols, 2 families).
		{"an endpoint added (sorted last)", withEndpoint(7, ep("198.19.255.1", otherNode, ready)), 6 + 3 + 7},
		{"an endpoint turning not ready", func() Input {
			in := base
			in.EndpointSlices = append([]*discoveryv1.EndpointSlice(nil), slices...)
			s := slices[7].DeepCopy()
			s.Endpoints[2].Conditions = ep("", "", notReady).Conditions
			in.EndpointSlices[7] = s
			return in
		}(), 6 + 3 + 7}, // 3 frontends to pick-2, 3 endpoint elements gone, new chain pick-2
		// 3 frontends, 9 endpoint elements, 2 masquerading frontends (ingress IP and NodePort),
		// its endpoint on this node in local-endpoints and hairpin, and its ClusterIP and
		// ingress IP in service-ips.
		{"a new Service", func() Input {
			in := base
			more, moreSlices := manyServices(301, 3, 3)
			in.Services, in.EndpointSlices = more, moreSlices
			return in
		}(), 3 + 9 + 2 + 2 + 2},
		{"a Service deleted", func() Input {
			in := base
			in.Services = svcs[1:]
			return in
		}(), 3 + 9 + 2 + 2 + 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake, a, _ := newFakeApplier()
			if res := mustSync(t, a, base); !res.Full {
				t.Fatalf("first sync %+v, want full", res)
			}
			res := mustSync(t, a, c.change)
			if res.Full || res.Operations != c.ops {
				t.Errorf("sync: %+v, want an incremental one of %d operations:\n%s", res, c.ops, fake.LastTransaction)
			}
		})
	}
}

// TestUnreferencedChainsAreDeletedLater: an affinity Service going away flushes its chains and
// deletes its sets at once, and deletes the chains only after staleChainGrace.
func TestUnreferencedChainsAreDeletedLater(t *testing.T) {
	fake, a, clock := newFakeApplier()
	mustSync(t, a, scenarios["affinity"]())
	in := scenarios["affinity"]()
	in.Services = in.Services[:1] // drop "sticky-default"
	mustSync(t, a, in)
	chains := func() string {
		var names []string
		for name := range fake.Table.Chains {
			if strings.Contains(name, "sticky-default") {
				names = append(names, fmt.Sprintf("%s(%d rules)", name, len(fake.Table.Chains[name].Rules)))
			}
		}
		return strings.Join(names, " ")
	}
	sets := func() int {
		n := 0
		for name := range fake.Table.Sets {
			if strings.Contains(name, "sticky-default") {
				n++
			}
		}
		return n
	}
	if got := chains(); !strings.Contains(got, "(0 rules)") || strings.Contains(got, "(1 rules)") || strings.Contains(got, "(2 rules)") {
		t.Errorf("right after: chains %s, want them present and empty", got)
	}
	if sets() != 0 {
		t.Errorf("right after: %d sets of the Service left, want 0", sets())
	}
	clock.advance(staleChainGrace / 2)
	mustSync(t, a, in)
	if chains() == "" {
		t.Errorf("deleted before the grace period")
	}
	clock.advance(staleChainGrace / 2)
	mustSync(t, a, in)
	if got := chains(); got != "" {
		t.Errorf("after the grace period: chains %s left, want none", got)
	}
	// A chain that comes back while flushed is reused.
	mustSync(t, a, scenarios["affinity"]())
	in2 := scenarios["affinity"]()
	mustSync(t, a, in)
	mustSync(t, a, in2)
	if diff := cmp.Diff(sortedLines(dumpOf(t, in2)), sortedLines(fake.Dump())); diff != "" {
		t.Errorf("after a chain came back within the grace period (-want +got):\n%s", diff)
	}
}

// TestFailureMakesNextSyncFull: when the table changed behind the Applier's back, the
// incremental sync fails, and the next one replaces the table.
func TestFailureMakesNextSyncFull(t *testing.T) {
	fake, a, _ := newFakeApplier()
	mustSync(t, a, scenarios["cluster-policy"]())
	tx := fake.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sync(context.Background(), Render(scenarios["local-policy"]())); err == nil {
		t.Fatal("incremental sync on a deleted table succeeded")
	}
	res := mustSync(t, a, scenarios["local-policy"]())
	if !res.Full {
		t.Errorf("sync after a failure: %+v, want a full one", res)
	}
	if diff := cmp.Diff(sortedLines(dumpOf(t, scenarios["local-policy"]())), sortedLines(fake.Dump())); diff != "" {
		t.Errorf("table after recovery (-want +got):\n%s", diff)
	}
	a.Invalidate()
	if res := mustSync(t, a, scenarios["local-policy"]()); !res.Full {
		t.Errorf("sync after Invalidate: %+v, want a full one", res)
	}
}

// TestNothingChangedRunsNothing: a sync with nothing to do does not run nft.
func TestNothingChangedRunsNothing(t *testing.T) {
	fake, a, _ := newFakeApplier()
	mustSync(t, a, scenarios["dual-stack"]())
	before := fake.LastTransaction
	if res := mustSync(t, a, scenarios["dual-stack"]()); res.Operations != 0 || res.Full {
		t.Errorf("second identical sync: %+v, want no operations", res)
	}
	if fake.LastTransaction != before {
		t.Errorf("nft ran for an empty transaction")
	}
}

// sortedLines returns the lines of a dump, sorted.
func sortedLines(dump string) []string {
	lines := strings.Split(strings.TrimSpace(dump), "\n")
	slices.Sort(lines)
	return lines
}

// withoutUnusedPickChains drops the lines of pick chains that full does not have.
func withoutUnusedPickChains(lines []string, full string) []string {
	var out []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 5 && (f[1] == "chain" || f[1] == "rule") && strings.HasPrefix(f[4], pickChainPrefix) &&
			!strings.Contains(full, "add chain inet ironlb "+f[4]+"\n") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// TestIncrementalOwnershipMoves: an element two Services would add belongs to the first; when
// that one goes, the other's takes its place within the same transaction. Here: a LoadBalancer
// IP:port claimed twice, and an endpoint on this node (local-endpoints, hairpin) shared.
func TestIncrementalOwnershipMoves(t *testing.T) {
	first := service("a-first", lb, "198.18.0.30", []corev1.ServicePort{tcpPort("http", 80, 30090)}, ingress("203.0.113.30"))
	second := service("b-second", lb, "198.18.0.31", []corev1.ServicePort{tcpPort("http", 80, 30091)}, ingress("203.0.113.30"))
	slices := []*discoveryv1.EndpointSlice{
		slice("a-first", "a-1", http, ep("198.18.1.2", thisNode, ready)),
		slice("b-second", "b-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
	}
	both := Input{Node: testNode, Options: DefaultOptions(), Services: []*corev1.Service{first, second}, EndpointSlices: slices}
	onlySecond := both
	onlySecond.Services = []*corev1.Service{second}
	for _, c := range []struct {
		name     string
		from, to Input
	}{{"first deleted", both, onlySecond}, {"first added", onlySecond, both}} {
		t.Run(c.name, func(t *testing.T) {
			fake, a, _ := newFakeApplier()
			mustSync(t, a, c.from)
			mustSync(t, a, c.to)
			full := dumpOf(t, c.to)
			if diff := cmp.Diff(sortedLines(full), withoutUnusedPickChains(sortedLines(fake.Dump()), full)); diff != "" {
				t.Errorf("(-full +incremental):\n%s", diff)
			}
		})
	}
}
