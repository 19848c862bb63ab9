package allocator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// check runs Allocate and compares the outcome.
func check(t *testing.T, a *Allocator, r Request, want []Assigned, wantErr *errOf) {
	t.Helper()
	got, err := a.Allocate(r)
	if diff := cmp.Diff(wantErr, describe(err)); diff != "" {
		t.Fatalf("Allocate(%s) error (-want +got):\n%s", r.Service, diff)
	}
	if diff := cmp.Diff(want, got.IPs, cmpOpts); err == nil && diff != "" {
		t.Errorf("Allocate(%s) (-want +got):\n%s", r.Service, diff)
	}
	if err := a.verify(); err != nil {
		t.Fatal(err)
	}
}

// holds checks what service holds.
func holds(t *testing.T, a *Allocator, service string, want ...Assigned) {
	t.Helper()
	got, ok := a.Assignment(service)
	if ok != (len(want) > 0) {
		t.Fatalf("Assignment(%s) found %t, want %v", service, ok, want)
	}
	if diff := cmp.Diff(want, got.IPs, cmpOpts); ok && diff != "" {
		t.Errorf("Assignment(%s) (-want +got):\n%s", service, diff)
	}
}

func TestAllocateKeepsOrMoves(t *testing.T) {
	web := func(t *testing.T) Pool { return newPool(t, "web", "10.0.0.0/29", "2001:db8::/125") }
	t.Run("a held address is kept when a lower one frees", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, v4("a"), v4("b"))
		a.Release("ns/a")
		check(t, a, v4("b"), []Assigned{in("10.0.0.1", "web")}, nil)
	})
	t.Run("another requested pool moves the service", func(t *testing.T) {
		a := newAllocator(t, web(t), newPool(t, "x", "10.0.1.0/29"))
		mustAllocate(t, a, v4("a"))
		check(t, a, req(v4("a"), func(r *Request) { r.Pool = "x" }), []Assigned{in("10.0.1.0", "x")}, nil)
		if h := a.Holders(addr("10.0.0.0")); h != nil {
			t.Errorf("the old address is still held by %v", h)
		}
	})
	t.Run("another requested address moves the service", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, v4("a"))
		check(t, a, req(v4("a"), func(r *Request) { r.IPs = addrs("10.0.0.5") }), []Assigned{in("10.0.0.5", "web")}, nil)
		check(t, a, v4("b"), []Assigned{in("10.0.0.0", "web")}, nil)
	})
	t.Run("a failed move keeps the old address", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, v4("a"), req(v4("b"), func(r *Request) { r.IPs = addrs("10.0.0.5") }))
		check(t, a, req(v4("a"), func(r *Request) { r.IPs = addrs("10.0.0.5") }), nil,
			&errOf{RequestedIPUnavailable, "10.0.0.5 is in use by ns/b (neither has a sharing key)"})
		holds(t, a, "ns/a", in("10.0.0.0", "web"))
	})
	t.Run("dropping a family frees its address and keeps the other", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, v4("x"), dual("a", RequireDualStack))
		check(t, a, v6("a"), []Assigned{in("2001:db8::", "web")}, nil)
		check(t, a, v4("b"), []Assigned{in("10.0.0.1", "web")}, nil)
	})
	t.Run("adding a family keeps the first", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, v4("x"), v4("a"))
		a.Release("ns/x")
		check(t, a, dual("a", RequireDualStack), []Assigned{in("10.0.0.1", "web"), in("2001:db8::", "web")}, nil)
	})
	t.Run("PreferDualStack gains the missing family when a pool has it", func(t *testing.T) {
		a := newAllocator(t, newPool(t, "web", "10.0.0.0/29"))
		check(t, a, dual("a", PreferDualStack), []Assigned{in("10.0.0.0", "web")}, nil)
		a.SetPools([]Pool{web(t)})
		check(t, a, dual("a", PreferDualStack), []Assigned{in("10.0.0.0", "web"), in("2001:db8::", "web")}, nil)
	})
	t.Run("a pool shrink does not move the address, even with the pool requested", func(t *testing.T) {
		a := newAllocator(t, newPool(t, "web", "10.0.0.0/29"))
		mustAllocate(t, a, req(v4("a"), func(r *Request) { r.IPs = addrs("10.0.0.6") }), v4("b"), v4("c"))
		a.SetPools([]Pool{newPool(t, "web", "10.0.0.0/30")})
		check(t, a, req(v4("a"), func(r *Request) { r.Pool = "web" }), []Assigned{in("10.0.0.6", "")}, nil)
		check(t, a, v4("a"), []Assigned{in("10.0.0.6", "")}, nil)
		check(t, a, req(v4("a"), func(r *Request) { r.IPs = addrs("10.0.0.6") }), []Assigned{in("10.0.0.6", "")}, nil)
	})
	t.Run("a requested pool that never held the address moves it", func(t *testing.T) {
		a := newAllocator(t, web(t))
		if _, err := a.Restore(v4("a"), addrs("192.0.2.1")); err != nil {
			t.Fatal(err)
		}
		check(t, a, req(v4("a"), func(r *Request) { r.Pool = "web" }), []Assigned{in("10.0.0.0", "web")}, nil)
	})
	t.Run("a restriction added later does not move the address", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, v4("a"))
		a.SetPools([]Pool{with(web(t), func(p *Pool) { p.Namespaces = []string{"other"} })})
		check(t, a, v4("a"), []Assigned{in("10.0.0.0", "web")}, nil)
		check(t, a, v4("b"), nil, &errOf{NoPool, "no auto-assign pool admits this service"})
	})
	t.Run("another sharing key moves a service away from its co-holders", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, shared(v4("a"), "k", tcp(80)), shared(v4("b"), "k", tcp(443)))
		check(t, a, shared(v4("b"), "k2", tcp(443)), []Assigned{in("10.0.0.1", "web")}, nil)
		holds(t, a, "ns/a", in("10.0.0.0", "web"))
	})
	t.Run("a sole holder changes its sharing key in place", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, shared(v4("a"), "k", tcp(80)))
		check(t, a, shared(v4("a"), "k2", tcp(80)), []Assigned{in("10.0.0.0", "web")}, nil)
		check(t, a, shared(v4("b"), "k2", tcp(443)), []Assigned{in("10.0.0.0", "web")}, nil)
		check(t, a, shared(v4("c"), "k", tcp(443)), []Assigned{in("10.0.0.1", "web")}, nil)
	})
	t.Run("ports now overlapping a co-holder move the service", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, shared(v4("a"), "k", tcp(80)), shared(v4("b"), "k", tcp(443)))
		check(t, a, shared(v4("b"), "k", tcp(80)), []Assigned{in("10.0.0.1", "web")}, nil)
	})
	t.Run("ports given in any order and repeated are the same", func(t *testing.T) {
		a := newAllocator(t, web(t))
		mustAllocate(t, a, shared(v4("a"), "k", tcp(443), tcp(80), tcp(443)))
		check(t, a, shared(v4("b"), "k", udp(80)), []Assigned{in("10.0.0.0", "web")}, nil)
		check(t, a, shared(v4("c"), "k", tcp(80)), []Assigned{in("10.0.0.1", "web")}, nil)
	})
}

func TestRelease(t *testing.T) {
	a := newAllocator(t, newPool(t, "web", "10.0.0.0/30"))
	mustAllocate(t, a, shared(v4("a"), "k", tcp(80)), shared(v4("b"), "k", tcp(443)), v4("c"))
	if got := a.Holders(addr("10.0.0.0")); !cmp.Equal(got, []string{"ns/a", "ns/b"}) {
		t.Errorf("Holders = %v", got)
	}
	if !a.Release("ns/a") {
		t.Error("Release(ns/a) = false")
	}
	if a.Release("ns/a") {
		t.Error("a second Release(ns/a) = true")
	}
	if got := a.Holders(addr("10.0.0.0")); !cmp.Equal(got, []string{"ns/b"}) {
		t.Errorf("after releasing ns/a, Holders = %v", got)
	}
	check(t, a, v4("d"), []Assigned{in("10.0.0.2", "web")}, nil)
	a.Release("ns/b")
	if got := a.Holders(addr("10.0.0.0")); got != nil {
		t.Errorf("after releasing every holder, Holders = %v", got)
	}
	check(t, a, v4("e"), []Assigned{in("10.0.0.0", "web")}, nil)
	holds(t, a, "ns/a")
}

func TestRestore(t *testing.T) {
	pools := func(t *testing.T) []Pool {
		return []Pool{
			with(newPool(t, "web", "10.0.0.0/24"), func(p *Pool) { p.AvoidBuggyIPs = true }),
			with(newPool(t, "manual", "10.0.1.0/24"), func(p *Pool) { p.AutoAssign = false }),
			with(newPool(t, "team", "10.0.2.0/24"), func(p *Pool) { p.Namespaces = []string{"team"} }),
		}
	}
	for _, tc := range []struct {
		name   string
		before [][2]any // Request, []string to restore first
		req    Request
		ips    []string
		want   []Assigned
		err    *errOf
	}{
		{name: "an address in a pool", req: v4("a"), ips: []string{"10.0.0.7"}, want: []Assigned{in("10.0.0.7", "web")}},
		{name: "an address outside every pool", req: v4("a"), ips: []string{"192.0.2.1"}, want: []Assigned{in("192.0.2.1", "")}},
		{name: "an address the pool avoids", req: v4("a"), ips: []string{"10.0.0.255"}, want: []Assigned{in("10.0.0.255", "web")}},
		{name: "an address of a manual pool", req: v4("a"), ips: []string{"10.0.1.1"}, want: []Assigned{in("10.0.1.1", "manual")}},
		{name: "an address of a pool that does not admit the service", req: v4("a"), ips: []string{"10.0.2.1"}, want: []Assigned{in("10.0.2.1", "team")}},
		{
			name: "dual-stack in the given order, whatever the request says",
			req:  v4("a"), ips: []string{"2001:db8::1", "10.0.0.1"},
			want: []Assigned{in("2001:db8::1", ""), in("10.0.0.1", "web")},
		},
		{
			name:   "held by a service that cannot share",
			before: [][2]any{{v4("a"), []string{"10.0.0.7"}}},
			req:    v4("b"), ips: []string{"10.0.0.7"},
			err: &errOf{RequestedIPUnavailable, "10.0.0.7 is in use by ns/a (neither has a sharing key)"},
		},
		{
			name:   "shared with the same key",
			before: [][2]any{{shared(v4("a"), "k", tcp(80)), []string{"192.0.2.1"}}},
			req:    shared(v4("b"), "k", tcp(443)), ips: []string{"192.0.2.1"},
			want: []Assigned{in("192.0.2.1", "")},
		},
		{
			name:   "same key, same port",
			before: [][2]any{{shared(v4("a"), "k", tcp(80)), []string{"192.0.2.1"}}},
			req:    shared(v4("b"), "k", tcp(80)), ips: []string{"192.0.2.1"},
			err: &errOf{SharingConflict, "192.0.2.1 cannot be shared: port 80/TCP is used by ns/a"},
		},
		{
			name:   "replaces what the service held",
			before: [][2]any{{v4("a"), []string{"10.0.0.7"}}},
			req:    v4("a"), ips: []string{"10.0.0.8"},
			want: []Assigned{in("10.0.0.8", "web")},
		},
		{name: "no address", req: v4("a"), err: &errOf{InvalidRequest, "no address to restore"}},
		{name: "no service", req: Request{}, ips: []string{"10.0.0.1"}, err: &errOf{InvalidRequest, "the request names no service"}},
		{name: "two of a family", req: v4("a"), ips: []string{"10.0.0.1", "10.0.0.2"}, err: &errOf{InvalidRequest, "two IPv4 addresses requested (10.0.0.1 and 10.0.0.2)"}},
		{name: "the same address twice", req: v4("a"), ips: []string{"10.0.0.1", "10.0.0.1"}, err: &errOf{InvalidRequest, "two IPv4 addresses requested (10.0.0.1 and 10.0.0.1)"}},
		{name: "a zone", req: v6("a"), ips: []string{"fe80::1%eth0"}, err: &errOf{InvalidRequest, "requested address: fe80::1%eth0 has a zone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAllocator(t, pools(t)...)
			for _, b := range tc.before {
				if _, err := a.Restore(b[0].(Request), addrs(b[1].([]string)...)); err != nil {
					t.Fatal(err)
				}
			}
			before := dump(a)
			got, err := a.Restore(tc.req, addrs(tc.ips...))
			if diff := cmp.Diff(tc.err, describe(err)); diff != "" {
				t.Fatalf("Restore error (-want +got):\n%s", diff)
			}
			if err != nil {
				if diff := cmp.Diff(before, dump(a)); diff != "" {
					t.Errorf("a failed Restore changed the state (-before +after):\n%s", diff)
				}
			} else {
				if diff := cmp.Diff(tc.want, got.IPs, cmpOpts); diff != "" {
					t.Errorf("Restore (-want +got):\n%s", diff)
				}
				holds(t, a, tc.req.Service, tc.want...)
			}
			if err := a.verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRestoreThenAllocate(t *testing.T) {
	a := newAllocator(t, newPool(t, "web", "10.0.0.0/29"))
	for _, r := range []struct {
		req Request
		ip  string
	}{{v4("a"), "10.0.0.3"}, {v4("b"), "10.0.0.0"}, {v4("c"), "192.0.2.1"}} {
		if _, err := a.Restore(r.req, addrs(r.ip)); err != nil {
			t.Fatal(err)
		}
	}
	// A restart never changes an address.
	check(t, a, v4("a"), []Assigned{in("10.0.0.3", "web")}, nil)
	check(t, a, v4("b"), []Assigned{in("10.0.0.0", "web")}, nil)
	check(t, a, v4("c"), []Assigned{in("192.0.2.1", "")}, nil)
	// Restored addresses are not handed out again.
	check(t, a, v4("d"), []Assigned{in("10.0.0.1", "web")}, nil)
	check(t, a, v4("e"), []Assigned{in("10.0.0.2", "web")}, nil)
	check(t, a, v4("f"), []Assigned{in("10.0.0.4", "web")}, nil)
}
