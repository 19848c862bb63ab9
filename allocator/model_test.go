package allocator

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"
)

// The model test drives an Allocator with random operations over small
// pools and, after every step, checks it against invariants and against a
// slow reference that walks addresses one by one.

var (
	modelSeed = flag.Uint64("model.seed", 0, "seed of the model test (0: from the clock)")
	modelRuns = flag.Int("model.runs", 2000, "random operation sequences in the model test")
)

const modelSteps = 60

func TestModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	runs := *modelRuns
	if testing.Short() {
		runs /= 10
	}
	outcomes := map[string]int{}
	pools := poolUniverse(t)
	all := addrUniverse(pools)
	for i := range runs {
		m := newModel(t, seed+uint64(i))
		m.outcomes, m.universe, m.all = outcomes, pools, all
		if !m.run() {
			t.Fatalf("reproduce with: go test ./allocator -run '^TestModel$' -model.seed=%d -model.runs=1", seed+uint64(i))
		}
	}
	t.Logf("seed %d, %d runs of %d steps; outcomes: %v", seed, runs, modelSteps, outcomes)
}

type model struct {
	t        *testing.T
	seed     uint64
	rnd      *rand.Rand
	a        *Allocator
	pools    []Pool // the current set, as given
	history  []string
	outcomes map[string]int // what happened, to see that the test explores
	universe []Pool         // the pools SetPools draws from
	all      []netip.Addr   // every address of universe, and some outside
}

func newModel(t *testing.T, seed uint64) *model {
	return &model{t: t, seed: seed, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), a: New()}
}

// fail reports a violation with the operations that led to it.
func (m *model) fail(format string, args ...any) bool {
	m.t.Errorf("seed %d, step %d: %s\noperations:\n  %s", m.seed, len(m.history), fmt.Sprintf(format, args...), strings.Join(m.history, "\n  "))
	return false
}

func (m *model) run() bool {
	m.setPools()
	if !m.check() {
		return false
	}
	for range modelSteps {
		var ok bool
		switch n := m.rnd.IntN(100); {
		case n < 60:
			ok = m.allocate()
		case n < 75:
			ok = m.release()
		case n < 88:
			ok = m.restore()
		default:
			ok = m.setPools()
		}
		if !ok || !m.check() {
			return false
		}
	}
	return true
}

// The universe of pools. Several overlap (so some sets disable pools), "a"
// has a shrunk variant, and there are restricted, manual and buggy ones.
func poolUniverse(t *testing.T) []Pool {
	sel := func(s string) labels.Selector { return selector(t, s) }
	return []Pool{
		newPool(t, "a", "10.0.0.0/29", "2001:db8::/126"),
		newPool(t, "b", "10.0.0.253-10.0.1.2", "10.0.2.255"),
		with(newPool(t, "b", "10.0.0.253-10.0.1.2", "10.0.2.255"), func(p *Pool) { p.AvoidBuggyIPs = true }),
		with(newPool(t, "c", "10.0.3.0/30", "2001:db8::10/127"), func(p *Pool) { p.AutoAssign = false }),
		with(newPool(t, "d", "10.0.4.0/31"), func(p *Pool) { p.Namespaces, p.Priority = []string{"ns1"}, 1 }),
		with(newPool(t, "e", "2001:db8:1::/127", "10.0.5.0/31"), func(p *Pool) { p.NamespaceSelector = sel("team=blue") }),
		with(newPool(t, "f", "10.0.6.0/31"), func(p *Pool) { p.ServiceSelector, p.Priority = sel("tier=web"), 1 }),
		newPool(t, "g", "10.0.0.6-10.0.0.9"),
		newPool(t, "a", "10.0.0.0/30", "2001:db8::2/127"),
	}
}

// addrUniverse lists every address of every pool, and some outside.
func addrUniverse(pools []Pool) []netip.Addr {
	var all []netip.Addr
	for _, p := range pools {
		for _, r := range p.Ranges {
			for a := r.From; a.IsValid() && a.Compare(r.To) <= 0; a = a.Next() {
				all = append(all, a)
			}
		}
	}
	all = append(all, addrs("192.0.2.1", "192.0.2.2", "2001:db8:ffff::1")...)
	slices.SortFunc(all, netip.Addr.Compare)
	return slices.Compact(all)
}

func (m *model) setPools() bool {
	var set []Pool
	seen := map[string]bool{}
	for _, p := range m.universe {
		if m.rnd.IntN(3) > 0 && !seen[p.Name] {
			set = append(set, p)
			seen[p.Name] = true
		}
	}
	m.rnd.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
	names := make([]string, len(set))
	for i, p := range set {
		names[i] = fmt.Sprintf("%s%v", p.Name, p.Ranges)
	}
	m.history = append(m.history, "SetPools "+strings.Join(names, " "))
	m.pools = set
	rep := m.a.SetPools(set)
	m.outcomes[fmt.Sprintf("SetPools overlaps=%t outside=%t", len(rep.Overlaps) > 0, len(rep.Outside) > 0)]++
	if len(rep.Invalid) > 0 {
		return m.fail("invalid pools: %v", rep.Invalid)
	}
	// Every overlapping pair is reported, the later pool first.
	var want []Overlap
	for j := range set {
		for i := range j {
			if r, ok := slowOverlap(set[j], set[i]); ok {
				want = append(want, Overlap{Pool: set[j].Name, With: set[i].Name, Range: r})
			}
		}
	}
	if diff := cmp.Diff(want, rep.Overlaps, cmpOpts); diff != "" {
		return m.fail("overlaps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(m.a.Outside(), rep.Outside, cmpOpts); diff != "" {
		return m.fail("report.Outside differs from Outside() (-outside +report):\n%s", diff)
	}
	return true
}

// slowOverlap returns the lowest run of addresses p and q have in common.
func slowOverlap(p, q Pool) (Range, bool) {
	var common []netip.Addr
	for _, r := range p.Ranges {
		for a := r.From; a.IsValid() && a.Compare(r.To) <= 0; a = a.Next() {
			for _, s := range q.Ranges {
				if s.Contains(a) {
					common = append(common, a)
				}
			}
		}
	}
	if len(common) == 0 {
		return Range{}, false
	}
	slices.SortFunc(common, netip.Addr.Compare)
	r := Range{From: common[0], To: common[0]}
	for _, a := range common[1:] {
		if a != r.To.Next() {
			break
		}
		r.To = a
	}
	return r, true
}

func (m *model) service() string {
	return fmt.Sprintf("ns%d/s%d", 1+m.rnd.IntN(2), m.rnd.IntN(8))
}

func (m *model) randomRequest(svc string) Request {
	ns, _, _ := strings.Cut(svc, "/")
	r := Request{Service: svc, Namespace: ns}
	if ns == "ns1" {
		r.NamespaceLabels = map[string]string{"team": "blue"}
	}
	if m.rnd.IntN(2) == 0 {
		r.ServiceLabels = map[string]string{"tier": "web"}
	}
	switch m.rnd.IntN(6) {
	case 0, 1:
		r.Families = []Family{IPv4}
	case 2:
		r.Families = []Family{IPv6}
	case 3:
		r.Families, r.Policy = []Family{IPv4, IPv6}, PreferDualStack
	case 4:
		r.Families, r.Policy = []Family{IPv6, IPv4}, RequireDualStack
	default:
		r.Families, r.Policy = []Family{IPv4, IPv6}, Policy(m.rnd.IntN(3))
	}
	if m.rnd.IntN(6) == 0 {
		all := m.all
		for _, f := range r.Families {
			if m.rnd.IntN(4) > 0 || r.Policy == RequireDualStack {
				for {
					if a := all[m.rnd.IntN(len(all))]; FamilyOf(a) == f {
						r.IPs = append(r.IPs, a)
						break
					}
				}
			}
		}
	}
	if m.rnd.IntN(6) == 0 {
		r.Pool = []string{"a", "b", "c", "d", "e", "f", "g", "x"}[m.rnd.IntN(8)]
	}
	if m.rnd.IntN(3) > 0 {
		r.SharingKey = []string{"k1", "k2"}[m.rnd.IntN(2)]
	}
	for _, p := range []Port{tcp(80), tcp(443), udp(53)} {
		if m.rnd.IntN(3) == 0 {
			r.Ports = append(r.Ports, p)
		}
	}
	if m.rnd.IntN(4) == 0 {
		r.Local = true
		r.EndpointSelector = []string{"app=a", "app=b"}[m.rnd.IntN(2)]
	}
	return r
}

func describeRequest(r Request) string {
	return fmt.Sprintf("%s fam=%v %s ips=%v pool=%q key=%q ports=%v local=%t sel=%q labels=%v/%v",
		r.Service, r.Families, r.Policy, r.IPs, r.Pool, r.SharingKey, r.Ports, r.Local, r.EndpointSelector, r.NamespaceLabels, r.ServiceLabels)
}

func (m *model) allocate() bool {
	svc := m.service()
	r := m.randomRequest(svc)
	m.history = append(m.history, "Allocate "+describeRequest(r))
	before, _ := m.a.Assignment(svc)
	state := snapshot(m.a)
	// The slow choice for each family, computed before the call.
	expect := map[Family]netip.Addr{}
	if len(r.IPs) == 0 {
		var w want
		if err := w.init(&r); err == nil {
			for _, f := range w.familyList() {
				if a, ok := m.slowPick(&w, f); ok {
					expect[f] = a
				}
			}
		}
	}
	got, err := m.a.Allocate(r)
	m.outcomes["Allocate "+string(ReasonOf(err))]++
	if err != nil {
		m.history[len(m.history)-1] += fmt.Sprintf(" -> %s: %v", ReasonOf(err), err)
		if ReasonOf(err) == "" {
			return m.fail("untyped error %v", err)
		}
		if !reflect.DeepEqual(state, snapshot(m.a)) {
			return m.fail("a failed Allocate changed the state:\n%s", cmp.Diff(dumpOf(state), dump(m.a)))
		}
		var e *Error
		if (ReasonOf(err) == PoolExhausted || ReasonOf(err) == FamilyUnavailable) && len(r.IPs) == 0 {
			e = err.(*Error)
			if a, ok := expect[e.Family]; ok {
				return m.fail("%s, but %s is available", err, a)
			}
		}
		return true
	}
	m.history[len(m.history)-1] += fmt.Sprintf(" -> %v", got.IPs)
	for _, ip := range got.IPs {
		if len(m.a.Holders(ip.Addr)) > 1 {
			m.outcomes["Allocate shared"]++
		}
		if ip.Pool == "" {
			m.outcomes["Allocate kept outside"]++
		}
	}
	if now, _ := m.a.Assignment(svc); !reflect.DeepEqual(now, got) {
		return m.fail("Allocate returned %v, Assignment says %v", got, now)
	}
	return m.checkAllocation(r, before, got, expect)
}

// checkAllocation checks a successful Allocate against the request.
func (m *model) checkAllocation(r Request, before, got Assignment, expect map[Family]netip.Addr) bool {
	var w want
	if err := w.init(&r); err != nil {
		return m.fail("Allocate accepted an invalid request: %v", err)
	}
	fams := w.familyList()
	var gotFams []Family
	for _, ip := range got.IPs {
		gotFams = append(gotFams, FamilyOf(ip.Addr))
	}
	switch {
	case len(got.IPs) == 0:
		return m.fail("no address allocated")
	case r.Policy != PreferDualStack && !slices.Equal(gotFams, fams):
		return m.fail("families %v, want %v", gotFams, fams)
	case r.Policy == PreferDualStack && !isSubsequence(gotFams, fams):
		return m.fail("families %v, want some of %v in order", gotFams, fams)
	}
	for _, f := range fams {
		if a, ok := expect[f]; ok && !slices.Contains(gotFams, f) {
			return m.fail("no %s address, but %s is available", f, a)
		}
	}
	if len(r.IPs) > 0 && !sameSet(got.Addrs(), r.IPs) {
		return m.fail("got %v, requested %v", got.Addrs(), r.IPs)
	}
	for _, ip := range got.IPs {
		if slices.Contains(before.Addrs(), ip.Addr) {
			continue // kept
		}
		p := slowPoolOf(m.a.pools, ip.Addr)
		switch {
		case p == nil:
			return m.fail("new address %s is in no pool", ip.Addr)
		case !p.enabled:
			return m.fail("new address %s is in disabled pool %q", ip.Addr, p.Name)
		case !p.admits(&w):
			return m.fail("new address %s is in pool %q, which does not admit the service", ip.Addr, p.Name)
		case p.AvoidBuggyIPs && isBuggy(ip.Addr):
			return m.fail("new address %s is buggy", ip.Addr)
		case r.Pool != "" && p.Name != r.Pool:
			return m.fail("new address %s is in pool %q, not the requested %q", ip.Addr, p.Name, r.Pool)
		case len(r.IPs) == 0 && r.Pool == "" && !p.AutoAssign:
			return m.fail("new address %s is in manual pool %q", ip.Addr, p.Name)
		case ip.Pool != p.Name:
			return m.fail("new address %s reported in pool %q, is in %q", ip.Addr, ip.Pool, p.Name)
		}
		if want, ok := expect[FamilyOf(ip.Addr)]; len(r.IPs) == 0 && (!ok || want != ip.Addr) {
			return m.fail("new address %s, the slow reference picks %s", ip.Addr, want)
		}
	}
	return true
}

func isSubsequence(sub, of []Family) bool {
	i := 0
	for _, f := range of {
		if i < len(sub) && sub[i] == f {
			i++
		}
	}
	return i == len(sub)
}

func sameSet(x, y []netip.Addr) bool {
	x, y = slices.Clone(x), slices.Clone(y)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}

// slowPick is the reference choice of a new address of family f for w,
// written from the rules and walking addresses.
func (m *model) slowPick(w *want, f Family) (netip.Addr, bool) {
	var cands []*pool
	for _, p := range m.a.pools {
		if p.enabled && p.admits(w) && p.has(f) && (w.pool == p.Name || w.pool == "" && p.AutoAssign) {
			cands = append(cands, p)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		p, q := cands[i], cands[j]
		if p.Restricted() != q.Restricted() {
			return p.Restricted()
		}
		if p.Restricted() && p.Priority != q.Priority {
			return p.Priority < q.Priority
		}
		return p.Name < q.Name
	})
	s := m.a.services[w.service]
	if w.share.key != "" {
		for _, p := range cands {
			for _, r := range p.fam(f).ranges {
				for a := r.From; a.IsValid() && a.Compare(r.To) <= 0; a = a.Next() {
					rec := m.a.addrs[a]
					if rec != nil && rec.share.key == w.share.key && slowPoolOf(m.a.pools, a) == p &&
						p.allocatable(a) && compatible(w.share, w.ports, s, rec) == nil {
						return a, true
					}
				}
			}
		}
	}
	for _, p := range cands {
		if a, ok := slowLowestFree(m.a, p, f); ok {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (m *model) release() bool {
	svc := m.service()
	_, held := m.a.Assignment(svc)
	m.history = append(m.history, "Release "+svc)
	if got := m.a.Release(svc); got != held {
		return m.fail("Release = %t, the service held addresses: %t", got, held)
	}
	if _, ok := m.a.Assignment(svc); ok {
		return m.fail("%s still holds addresses after Release", svc)
	}
	return true
}

func (m *model) restore() bool {
	svc := m.service()
	r := m.randomRequest(svc)
	all := m.all
	var ips []netip.Addr
	for range 1 + m.rnd.IntN(2) {
		a := all[m.rnd.IntN(len(all))]
		if len(ips) == 0 || FamilyOf(ips[0]) != FamilyOf(a) {
			ips = append(ips, a)
		}
	}
	m.history = append(m.history, fmt.Sprintf("Restore %s %v", describeRequest(r), ips))
	state := snapshot(m.a)
	got, err := m.a.Restore(r, ips)
	m.outcomes["Restore "+string(ReasonOf(err))]++
	if err != nil {
		m.history[len(m.history)-1] += fmt.Sprintf(" -> %s: %v", ReasonOf(err), err)
		if reason := ReasonOf(err); reason != RequestedIPUnavailable && reason != SharingConflict {
			return m.fail("Restore failed with %s: %v", reason, err)
		}
		if !reflect.DeepEqual(state, snapshot(m.a)) {
			return m.fail("a failed Restore changed the state:\n%s", cmp.Diff(dumpOf(state), dump(m.a)))
		}
		return true
	}
	if !slices.Equal(got.Addrs(), ips) {
		return m.fail("Restore gave %v, want %v", got.Addrs(), ips)
	}
	return true
}

// check verifies the invariants and the statistics after a step.
func (m *model) check() bool {
	if err := m.a.verify(); err != nil {
		return m.fail("%v", err)
	}
	// cmp.Diff only on failure: it dominates the run time otherwise.
	if slow, fast := slowStats(m.t, m.a), m.a.Stats(); !slices.Equal(slow, fast) {
		return m.fail("Stats (-slow +fast):\n%s", cmp.Diff(slow, fast))
	}
	var outside []Outside
	for addr, r := range m.a.addrs {
		if slowPoolOf(m.a.pools, addr) == nil {
			outside = append(outside, Outside{Addr: addr, Pool: r.last, Services: r.holderNames(nil)})
		}
	}
	slices.SortFunc(outside, func(x, y Outside) int { return x.Addr.Compare(y.Addr) })
	if fast := m.a.Outside(); !reflect.DeepEqual(outside, fast) {
		return m.fail("Outside (-slow +fast):\n%s", cmp.Diff(outside, fast, cmpOpts))
	}
	for name, s := range m.a.services {
		as, ok := m.a.Assignment(name)
		if !ok || len(as.IPs) != len(s.addrs) {
			return m.fail("Assignment(%s) = %v, %t", name, as, ok)
		}
		for _, ip := range as.IPs {
			if p := slowPoolOf(m.a.pools, ip.Addr); (p == nil && ip.Pool != "") || (p != nil && ip.Pool != p.Name) {
				return m.fail("%s: %s reported in pool %q", name, ip.Addr, ip.Pool)
			}
		}
	}
	return true
}
