package allocator

import "testing"

func TestAllocateSharing(t *testing.T) {
	pools := []Pool{newPool(t, "web", "10.0.0.0/29")}
	local := func(r Request, sel string) Request { r.Local, r.EndpointSelector = true, sel; return r }
	ask := func(r Request, ip string) Request { r.IPs = addrs(ip); return r }
	runScenarios(t, []scenario{
		{
			name:   "same key, other ports: shared",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80))},
			req:    shared(v4("b"), "k", tcp(443)),
			want:   []Assigned{in("10.0.0.0", "web")},
		},
		{
			name:   "same key, same port number with another protocol: shared",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(53))},
			req:    shared(v4("b"), "k", udp(53)),
			want:   []Assigned{in("10.0.0.0", "web")},
		},
		{
			name:   "same key, overlapping ports: a fresh address",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80), tcp(443))},
			req:    shared(v4("b"), "k", tcp(443)),
			want:   []Assigned{in("10.0.0.1", "web")},
		},
		{
			name:   "same key, overlapping ports, requested address",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80), tcp(443))},
			req:    ask(shared(v4("b"), "k", tcp(443)), "10.0.0.0"),
			err:    &errOf{SharingConflict, "10.0.0.0 cannot be shared: port 443/TCP is used by ns/a"},
		},
		{
			name:   "another key: a fresh address",
			pools:  pools,
			before: []Request{shared(v4("a"), "k1", tcp(80))},
			req:    shared(v4("b"), "k2", tcp(443)),
			want:   []Assigned{in("10.0.0.1", "web")},
		},
		{
			name:   "no key: a fresh address",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80))},
			req:    v4("b"),
			want:   []Assigned{in("10.0.0.1", "web")},
		},
		{
			name:   "the shared address wins over a lower free one",
			pools:  pools,
			before: []Request{ask(shared(v4("a"), "k", tcp(80)), "10.0.0.5")},
			req:    shared(v4("b"), "k", tcp(443)),
			want:   []Assigned{in("10.0.0.5", "web")},
		},
		{
			name:   "the lowest compatible shared address",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80), tcp(443)), shared(v4("b"), "k", tcp(80)), ask(shared(v4("c"), "k", tcp(443)), "10.0.0.4")},
			req:    shared(v4("d"), "k", tcp(443)),
			want:   []Assigned{in("10.0.0.1", "web")},
		},
		{
			name:   "a shared address in a later pool wins over a free one in an earlier pool",
			pools:  []Pool{newPool(t, "a", "10.0.0.0/29"), newPool(t, "b", "10.0.1.0/29")},
			before: []Request{req(shared(v4("a"), "k", tcp(80)), func(r *Request) { r.Pool = "b" })},
			req:    shared(v4("b"), "k", tcp(443)),
			want:   []Assigned{in("10.0.1.0", "b")},
		},
		{
			name:   "a shared address outside the requested pool is not used",
			pools:  []Pool{newPool(t, "a", "10.0.0.0/29"), newPool(t, "b", "10.0.1.0/29")},
			before: []Request{shared(v4("a"), "k", tcp(80))},
			req:    req(shared(v4("b"), "k", tcp(443)), func(r *Request) { r.Pool = "b" }),
			want:   []Assigned{in("10.0.1.0", "b")},
		},
		{
			name:   "a shared address is per family",
			pools:  []Pool{newPool(t, "web", "10.0.0.0/29", "2001:db8::/125")},
			before: []Request{shared(v6("a"), "k", tcp(80))},
			req:    shared(dual("b", RequireDualStack), "k", tcp(443)),
			want:   []Assigned{in("10.0.0.0", "web"), in("2001:db8::", "web")},
		},
		{
			name:   "Local and Cluster do not share: a fresh address",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80))},
			req:    local(shared(v4("b"), "k", tcp(443)), "app=web"),
			want:   []Assigned{in("10.0.0.1", "web")},
		},
		{
			name:   "Local and Cluster do not share: requested address",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80))},
			req:    ask(local(shared(v4("b"), "k", tcp(443)), "app=web"), "10.0.0.0"),
			err:    &errOf{SharingConflict, "10.0.0.0 cannot be shared: its services use externalTrafficPolicy Cluster, this one Local"},
		},
		{
			name:   "Cluster does not join Local",
			pools:  pools,
			before: []Request{local(shared(v4("a"), "k", tcp(80)), "app=web")},
			req:    ask(shared(v4("b"), "k", tcp(443)), "10.0.0.0"),
			err:    &errOf{SharingConflict, "10.0.0.0 cannot be shared: its services use externalTrafficPolicy Local, this one Cluster"},
		},
		{
			name:   "Local with the same endpoints: shared",
			pools:  pools,
			before: []Request{local(shared(v4("a"), "k", tcp(80)), "app=web")},
			req:    local(shared(v4("b"), "k", tcp(443)), "app=web"),
			want:   []Assigned{in("10.0.0.0", "web")},
		},
		{
			name:   "Local with other endpoints: requested address",
			pools:  pools,
			before: []Request{local(shared(v4("a"), "k", tcp(80)), "app=web")},
			req:    ask(local(shared(v4("b"), "k", tcp(443)), "app=db"), "10.0.0.0"),
			err:    &errOf{SharingConflict, "10.0.0.0 cannot be shared: its services (externalTrafficPolicy Local) select other endpoints"},
		},
		{
			name:   "Cluster services share whatever their endpoints",
			pools:  pools,
			before: []Request{req(shared(v4("a"), "k", tcp(80)), func(r *Request) { r.EndpointSelector = "app=web" })},
			req:    req(shared(v4("b"), "k", tcp(443)), func(r *Request) { r.EndpointSelector = "app=db" }),
			want:   []Assigned{in("10.0.0.0", "web")},
		},
		{
			name:   "a third service must avoid the ports of both",
			pools:  pools,
			before: []Request{shared(v4("a"), "k", tcp(80)), shared(v4("b"), "k", tcp(443))},
			req:    ask(shared(v4("c"), "k", tcp(8080), tcp(443)), "10.0.0.0"),
			err:    &errOf{SharingConflict, "10.0.0.0 cannot be shared: port 443/TCP is used by ns/b"},
		},
		{
			name:   "a held address without key is never offered for sharing",
			pools:  []Pool{newPool(t, "web", "10.0.0.0/31")},
			before: []Request{v4("a"), shared(v4("b"), "k", tcp(80))},
			req:    shared(v4("c"), "k", tcp(443)),
			want:   []Assigned{in("10.0.0.1", "web")},
		},
	})
}
