package allocator

import "testing"

func TestAllocateRestrictedPools(t *testing.T) {
	restrict := func(t *testing.T, name, cidr string, priority int, f func(*Pool)) Pool {
		p := newPool(t, name, cidr)
		p.Priority = priority
		f(&p)
		return p
	}
	inNamespace := func(ns ...string) func(*Pool) { return func(p *Pool) { p.Namespaces = ns } }
	nsLabels := func(s string) func(*Pool) { return func(p *Pool) { p.NamespaceSelector = selector(t, s) } }
	svcLabels := func(s string) func(*Pool) { return func(p *Pool) { p.ServiceSelector = selector(t, s) } }
	open := newPool(t, "a-open", "10.0.0.0/30")
	labelled := func(r Request) Request {
		r.NamespaceLabels = map[string]string{"team": "blue"}
		r.ServiceLabels = map[string]string{"tier": "web"}
		return r
	}
	runScenarios(t, []scenario{
		{
			name:  "a restricted pool admitting the namespace comes before unrestricted ones",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, inNamespace("other", "ns"))},
			req:   v4("x"),
			want:  []Assigned{in("10.0.9.0", "z-team")},
		},
		{
			name:  "a restricted pool refusing the namespace is skipped",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, inNamespace("other"))},
			req:   v4("x"),
			want:  []Assigned{in("10.0.0.0", "a-open")},
		},
		{
			name:  "namespace labels",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, nsLabels("team=blue"))},
			req:   labelled(v4("x")),
			want:  []Assigned{in("10.0.9.0", "z-team")},
		},
		{
			name:  "namespace labels that do not match",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, nsLabels("team=red"))},
			req:   labelled(v4("x")),
			want:  []Assigned{in("10.0.0.0", "a-open")},
		},
		{
			name:  "service labels",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, svcLabels("tier in (web,db)"))},
			req:   labelled(v4("x")),
			want:  []Assigned{in("10.0.9.0", "z-team")},
		},
		{
			name:  "service labels that do not match",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, svcLabels("tier=db"))},
			req:   labelled(v4("x")),
			want:  []Assigned{in("10.0.0.0", "a-open")},
		},
		{
			name: "a namespace listed but not selected is admitted: listed or selected",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, func(p *Pool) {
				inNamespace("ns")(p)
				nsLabels("team=red")(p)
			})},
			req:  labelled(v4("x")),
			want: []Assigned{in("10.0.9.0", "z-team")},
		},
		{
			name: "a namespace selected but not listed is admitted: listed or selected",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, func(p *Pool) {
				inNamespace("other")(p)
				nsLabels("team=blue")(p)
			})},
			req:  labelled(v4("x")),
			want: []Assigned{in("10.0.9.0", "z-team")},
		},
		{
			name: "a namespace neither listed nor selected is refused",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, func(p *Pool) {
				inNamespace("other")(p)
				nsLabels("team=red")(p)
			})},
			req:  labelled(v4("x")),
			want: []Assigned{in("10.0.0.0", "a-open")},
		},
		{
			name: "the namespace and the service selector must both match",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, func(p *Pool) {
				inNamespace("ns")(p)
				nsLabels("team=blue")(p)
				svcLabels("tier=db")(p)
			})},
			req:  labelled(v4("x")),
			want: []Assigned{in("10.0.0.0", "a-open")},
		},
		{
			name: "lower priority first",
			pools: []Pool{
				restrict(t, "a-team", "10.0.8.0/30", 2, inNamespace("ns")),
				restrict(t, "z-team", "10.0.9.0/30", 1, inNamespace("ns")),
			},
			req:  v4("x"),
			want: []Assigned{in("10.0.9.0", "z-team")},
		},
		{
			name: "equal priority by name",
			pools: []Pool{
				restrict(t, "z-team", "10.0.9.0/30", 1, inNamespace("ns")),
				restrict(t, "a-team", "10.0.8.0/30", 1, inNamespace("ns")),
			},
			req:  v4("x"),
			want: []Assigned{in("10.0.8.0", "a-team")},
		},
		{
			name: "priority does not order unrestricted pools",
			pools: []Pool{
				with(newPool(t, "a", "10.0.8.0/30"), func(p *Pool) { p.Priority = 9 }),
				with(newPool(t, "b", "10.0.9.0/30"), func(p *Pool) { p.Priority = 1 }),
			},
			req:  v4("x"),
			want: []Assigned{in("10.0.8.0", "a")},
		},
		{
			name:   "a full restricted pool falls through to unrestricted ones",
			pools:  []Pool{open, restrict(t, "z-team", "10.0.9.0/32", 0, inNamespace("ns"))},
			before: []Request{v4("w")},
			req:    v4("x"),
			want:   []Assigned{in("10.0.0.0", "a-open")},
		},
		{
			name:  "only restricted pools, none admitting",
			pools: []Pool{restrict(t, "z-team", "10.0.9.0/30", 0, inNamespace("other"))},
			req:   v4("x"),
			err:   &errOf{NoPool, "no auto-assign pool admits this service"},
		},
		{
			name:  "a restricted pool requested by name",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, inNamespace("other"))},
			req:   req(v4("x"), func(r *Request) { r.Pool = "z-team" }),
			err:   &errOf{NoPool, `pool "z-team" does not admit this service: namespace "ns" is not one of ["other"]`},
		},
		{
			name:  "a restricted pool requested by name, every reason",
			pools: []Pool{restrict(t, "z-team", "10.0.9.0/30", 0, func(p *Pool) { inNamespace("other")(p); nsLabels("team=red")(p); svcLabels("tier")(p) })},
			req:   req(v4("x"), func(r *Request) { r.Pool = "z-team" }),
			err: &errOf{NoPool, `pool "z-team" does not admit this service: namespace "ns" is not one of ["other"] and its labels do not match "team=red"; ` +
				`the service's labels do not match "tier"`},
		},
		{
			name:  "an address of a restricted pool requested",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, svcLabels("tier=db"))},
			req:   req(labelled(v4("x")), func(r *Request) { r.IPs = addrs("10.0.9.1") }),
			err:   &errOf{RequestedIPUnavailable, `10.0.9.1 is in pool "z-team", which does not admit this service: the service's labels do not match "tier=db"`},
		},
		{
			name:  "an address of an admitting restricted pool requested",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, svcLabels("tier=web"))},
			req:   req(labelled(v4("x")), func(r *Request) { r.IPs = addrs("10.0.9.1") }),
			want:  []Assigned{in("10.0.9.1", "z-team")},
		},
		{
			name:  "restricted pool with autoAssign=false is not used automatically",
			pools: []Pool{open, restrict(t, "z-team", "10.0.9.0/30", 0, func(p *Pool) { inNamespace("ns")(p); p.AutoAssign = false })},
			req:   v4("x"),
			want:  []Assigned{in("10.0.0.0", "a-open")},
		},
	})
}
