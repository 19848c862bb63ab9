package allocator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// scenario is one Allocate call after some successful ones.
type scenario struct {
	name   string
	pools  []Pool
	before []Request // allocated in order; each must succeed
	req    Request
	want   []Assigned // nil when err is set
	err    *errOf
}

// runScenarios checks each scenario's result, that a failure changes
// nothing, that a success is idempotent, and the invariants.
func runScenarios(t *testing.T, scenarios []scenario) {
	t.Helper()
	for _, tc := range scenarios {
		t.Run(tc.name, func(t *testing.T) {
			a := newAllocator(t, tc.pools...)
			mustAllocate(t, a, tc.before...)
			before := dump(a)
			got, err := a.Allocate(tc.req)
			if diff := cmp.Diff(tc.err, describe(err)); diff != "" {
				t.Fatalf("Allocate error (-want +got):\n%s", diff)
			}
			if err != nil {
				if diff := cmp.Diff(before, dump(a)); diff != "" {
					t.Errorf("a failed Allocate changed the state (-before +after):\n%s", diff)
				}
			} else {
				if diff := cmp.Diff(tc.want, got.IPs, cmpOpts); diff != "" {
					t.Errorf("Allocate (-want +got):\n%s", diff)
				}
				if got.Service != tc.req.Service {
					t.Errorf("Allocate returned service %q", got.Service)
				}
				after := dump(a)
				again, err := a.Allocate(tc.req)
				if err != nil {
					t.Fatalf("second Allocate: %v", err)
				}
				if diff := cmp.Diff(got, again, cmpOpts); diff != "" {
					t.Errorf("second Allocate (-first +second):\n%s", diff)
				}
				if diff := cmp.Diff(after, dump(a)); diff != "" {
					t.Errorf("second Allocate changed the state (-before +after):\n%s", diff)
				}
			}
			if err := a.verify(); err != nil {
				t.Fatal(err)
			}
			if small(a) {
				if diff := cmp.Diff(slowStats(t, a), a.Stats()); diff != "" {
					t.Errorf("Stats (-slow +fast):\n%s", diff)
				}
			}
		})
	}
}

func TestAllocateWithinPools(t *testing.T) {
	avoid := func(p *Pool) { p.AvoidBuggyIPs = true }
	runScenarios(t, []scenario{
		{
			name:  "lowest address of the only pool",
			pools: []Pool{newPool(t, "web", "198.51.100.0/30")},
			req:   v4("a"),
			want:  []Assigned{in("198.51.100.0", "web")},
		},
		{
			name:   "lowest free address after held ones",
			pools:  []Pool{newPool(t, "web", "198.51.100.0/30")},
			before: []Request{v4("a"), v4("b")},
			req:    v4("c"),
			want:   []Assigned{in("198.51.100.2", "web")},
		},
		{
			name:  "ranges are tried in address order, not listed order",
			pools: []Pool{newPool(t, "web", "198.51.100.9", "198.51.100.3")},
			req:   v4("a"),
			want:  []Assigned{in("198.51.100.3", "web")},
		},
		{
			name:  "avoidBuggyIPs skips .0",
			pools: []Pool{with(newPool(t, "web", "198.51.100.0/24"), avoid)},
			req:   v4("a"),
			want:  []Assigned{in("198.51.100.1", "web")},
		},
		{
			name:   "avoidBuggyIPs skips .255 and .0 in a range crossing a /24",
			pools:  []Pool{with(newPool(t, "web", "10.0.0.253-10.0.1.2"), avoid)},
			before: []Request{v4("a"), v4("b")},
			req:    v4("c"),
			want:   []Assigned{in("10.0.1.1", "web")},
		},
		{
			name:  "avoidBuggyIPs skips .255 and .0 in every range",
			pools: []Pool{with(newPool(t, "web", "10.0.0.255", "10.0.1.0-10.0.1.1"), avoid)},
			req:   v4("a"),
			want:  []Assigned{in("10.0.1.1", "web")},
		},
		{
			name:  "avoidBuggyIPs pool of only .255 and .0 is exhausted",
			pools: []Pool{with(newPool(t, "web", "10.0.0.255-10.0.1.0"), avoid)},
			req:   v4("a"),
			err:   &errOf{PoolExhausted, `pool "web" has no free IPv4 address`},
		},
		{
			name:   "without avoidBuggyIPs .255 and .0 are used",
			pools:  []Pool{newPool(t, "web", "10.0.0.254-10.0.1.1")},
			before: []Request{v4("a")},
			req:    v4("b"),
			want:   []Assigned{in("10.0.0.255", "web")},
		},
		{
			name:  "avoidBuggyIPs does not apply to IPv6",
			pools: []Pool{with(newPool(t, "web", "2001:db8::ff-2001:db8::100"), avoid)},
			req:   v6("a"),
			want:  []Assigned{in("2001:db8::ff", "web")},
		},
		{
			name:  "requested .0 in an avoidBuggyIPs pool",
			pools: []Pool{with(newPool(t, "web", "10.0.0.0/24"), avoid)},
			req:   req(v4("a"), func(r *Request) { r.IPs = addrs("10.0.0.0") }),
			err:   &errOf{RequestedIPUnavailable, `10.0.0.0 ends in .0 or .255, which pool "web" avoids`},
		},
		{
			name:  "IPv6 in a mixed-family pool",
			pools: []Pool{newPool(t, "web", "198.51.100.0/30", "2001:db8::/126")},
			req:   v6("a"),
			want:  []Assigned{in("2001:db8::", "web")},
		},
		{
			name:  "IPv6 in a /64 and a /48",
			pools: []Pool{newPool(t, "a", "2001:db8:1::/48"), newPool(t, "b", "2001:db8::/64")},
			req:   v6("a"),
			want:  []Assigned{in("2001:db8:1::", "a")},
		},
	})
}

func TestAllocatePoolOrder(t *testing.T) {
	manual := func(p *Pool) { p.AutoAssign = false }
	runScenarios(t, []scenario{
		{
			name:  "pools by name",
			pools: []Pool{newPool(t, "b", "10.0.0.0/30"), newPool(t, "a", "10.0.1.0/30")},
			req:   v4("x"),
			want:  []Assigned{in("10.0.1.0", "a")},
		},
		{
			name:   "a full pool falls through to the next",
			pools:  []Pool{newPool(t, "a", "10.0.1.0/32"), newPool(t, "b", "10.0.0.0/30")},
			before: []Request{v4("x")},
			req:    v4("y"),
			want:   []Assigned{in("10.0.0.0", "b")},
		},
		{
			name:   "every pool full",
			pools:  []Pool{newPool(t, "a", "10.0.1.0/32"), newPool(t, "b", "10.0.0.0/32")},
			before: []Request{v4("x"), v4("y")},
			req:    v4("z"),
			err:    &errOf{PoolExhausted, `no free IPv4 address in pools "a", "b"`},
		},
		{
			name: "no pool",
			req:  v4("x"),
			err:  &errOf{NoPool, "no auto-assign pool admits this service"},
		},
		{
			name:  "autoAssign=false is not used automatically",
			pools: []Pool{with(newPool(t, "a", "10.0.1.0/30"), manual)},
			req:   v4("x"),
			err:   &errOf{NoPool, "no auto-assign pool admits this service"},
		},
		{
			name:  "autoAssign=false is skipped for a later pool",
			pools: []Pool{with(newPool(t, "a", "10.0.1.0/30"), manual), newPool(t, "b", "10.0.0.0/30")},
			req:   v4("x"),
			want:  []Assigned{in("10.0.0.0", "b")},
		},
		{
			name:  "autoAssign=false is used by name",
			pools: []Pool{with(newPool(t, "a", "10.0.1.0/30"), manual), newPool(t, "b", "10.0.0.0/30")},
			req:   req(v4("x"), func(r *Request) { r.Pool = "a" }),
			want:  []Assigned{in("10.0.1.0", "a")},
		},
		{
			name:  "autoAssign=false is used by address",
			pools: []Pool{with(newPool(t, "a", "10.0.1.0/30"), manual)},
			req:   req(v4("x"), func(r *Request) { r.IPs = addrs("10.0.1.2") }),
			want:  []Assigned{in("10.0.1.2", "a")},
		},
		{
			name:  "requested pool wins over the order by name",
			pools: []Pool{newPool(t, "a", "10.0.1.0/30"), newPool(t, "b", "10.0.0.0/30")},
			req:   req(v4("x"), func(r *Request) { r.Pool = "b" }),
			want:  []Assigned{in("10.0.0.0", "b")},
		},
		{
			name:  "requested pool does not exist",
			pools: []Pool{newPool(t, "a", "10.0.1.0/30")},
			req:   req(v4("x"), func(r *Request) { r.Pool = "b" }),
			err:   &errOf{NoPool, `pool "b" does not exist`},
		},
		{
			name:   "requested pool is full, others are not",
			pools:  []Pool{newPool(t, "a", "10.0.1.0/30"), newPool(t, "b", "10.0.0.0/32")},
			before: []Request{req(v4("x"), func(r *Request) { r.Pool = "b" })},
			req:    req(v4("y"), func(r *Request) { r.Pool = "b" }),
			err:    &errOf{PoolExhausted, `pool "b" has no free IPv4 address`},
		},
		{
			name:  "requested pool has no IPv6",
			pools: []Pool{newPool(t, "a", "10.0.1.0/30"), newPool(t, "b", "2001:db8::/64")},
			req:   req(v6("x"), func(r *Request) { r.Pool = "a" }),
			err:   &errOf{FamilyUnavailable, `pool "a" has no IPv6 addresses`},
		},
		{
			name:  "requested address",
			pools: []Pool{newPool(t, "a", "10.0.1.0/30")},
			req:   req(v4("x"), func(r *Request) { r.IPs = addrs("10.0.1.3") }),
			want:  []Assigned{in("10.0.1.3", "a")},
		},
		{
			name:  "requested address outside every pool",
			pools: []Pool{newPool(t, "a", "10.0.1.0/30")},
			req:   req(v4("x"), func(r *Request) { r.IPs = addrs("192.0.2.1") }),
			err:   &errOf{RequestedIPOutsidePools, "192.0.2.1 is in no pool"},
		},
		{
			name:  "requested address not in the requested pool",
			pools: []Pool{newPool(t, "a", "10.0.1.0/30"), newPool(t, "b", "10.0.0.0/30")},
			req:   req(v4("x"), func(r *Request) { r.IPs, r.Pool = addrs("10.0.1.1"), "b" }),
			err:   &errOf{InvalidRequest, `10.0.1.1 is not in the requested pool "b"`},
		},
		{
			name:  "requested address in the requested pool",
			pools: []Pool{newPool(t, "a", "10.0.1.0/30"), newPool(t, "b", "10.0.0.0/30")},
			req:   req(v4("x"), func(r *Request) { r.IPs, r.Pool = addrs("10.0.0.1"), "b" }),
			want:  []Assigned{in("10.0.0.1", "b")},
		},
		{
			name:   "requested address held by a service without sharing key",
			pools:  []Pool{newPool(t, "a", "10.0.1.0/30")},
			before: []Request{v4("x")},
			req:    req(v4("y"), func(r *Request) { r.IPs = addrs("10.0.1.0") }),
			err:    &errOf{RequestedIPUnavailable, "10.0.1.0 is in use by ns/x (neither has a sharing key)"},
		},
		{
			name:   "requested address held, this service has a sharing key",
			pools:  []Pool{newPool(t, "a", "10.0.1.0/30")},
			before: []Request{v4("x")},
			req:    shared(req(v4("y"), func(r *Request) { r.IPs = addrs("10.0.1.0") }), "k"),
			err:    &errOf{RequestedIPUnavailable, "10.0.1.0 is in use by ns/x (it is not shared)"},
		},
		{
			name:   "requested address held under another sharing key",
			pools:  []Pool{newPool(t, "a", "10.0.1.0/30")},
			before: []Request{shared(v4("x"), "k1")},
			req:    shared(req(v4("y"), func(r *Request) { r.IPs = addrs("10.0.1.0") }), "k2"),
			err:    &errOf{RequestedIPUnavailable, "10.0.1.0 is in use by ns/x (under another sharing key)"},
		},
	})
}
