package allocator

import (
	"net/netip"
	"testing"
)

func TestAllocateFamilies(t *testing.T) {
	v4only := func(t *testing.T) Pool { return newPool(t, "v4", "10.0.0.0/30") }
	runScenarios(t, []scenario{
		{
			name:  "RequireDualStack gets one address per family",
			pools: []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")},
			req:   dual("a", RequireDualStack),
			want:  []Assigned{in("10.0.0.0", "web"), in("2001:db8::", "web")},
		},
		{
			name:  "the primary family comes first",
			pools: []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")},
			req:   req(dual("a", RequireDualStack), func(r *Request) { r.Families = []Family{IPv6, IPv4} }),
			want:  []Assigned{in("2001:db8::", "web"), in("10.0.0.0", "web")},
		},
		{
			name:  "families may come from different pools",
			pools: []Pool{newPool(t, "b", "2001:db8::/126"), newPool(t, "a", "10.0.0.0/30")},
			req:   dual("a", RequireDualStack),
			want:  []Assigned{in("10.0.0.0", "a"), in("2001:db8::", "b")},
		},
		{
			name:   "RequireDualStack with IPv6 exhausted allocates nothing",
			pools:  []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::1")},
			before: []Request{v6("x")},
			req:    dual("a", RequireDualStack),
			err:    &errOf{PoolExhausted, `pool "web" has no free IPv6 address`},
		},
		{
			name:   "RequireDualStack with IPv4 exhausted allocates nothing",
			pools:  []Pool{newPool(t, "web", "10.0.0.0/32", "2001:db8::/126")},
			before: []Request{v4("x")},
			req:    dual("a", RequireDualStack),
			err:    &errOf{PoolExhausted, `pool "web" has no free IPv4 address`},
		},
		{
			name:  "RequireDualStack without an IPv6 pool",
			pools: []Pool{v4only(t)},
			req:   dual("a", RequireDualStack),
			err:   &errOf{FamilyUnavailable, "no auto-assign pool admitting this service has IPv6 addresses"},
		},
		{
			name:  "PreferDualStack gets both when it can",
			pools: []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")},
			req:   dual("a", PreferDualStack),
			want:  []Assigned{in("10.0.0.0", "web"), in("2001:db8::", "web")},
		},
		{
			name:  "PreferDualStack without an IPv6 pool",
			pools: []Pool{v4only(t)},
			req:   dual("a", PreferDualStack),
			want:  []Assigned{in("10.0.0.0", "v4")},
		},
		{
			name:   "PreferDualStack with IPv4 exhausted",
			pools:  []Pool{newPool(t, "web", "10.0.0.0/32", "2001:db8::/126")},
			before: []Request{v4("x")},
			req:    dual("a", PreferDualStack),
			want:   []Assigned{in("2001:db8::", "web")},
		},
		{
			name:   "PreferDualStack with both exhausted reports the primary family",
			pools:  []Pool{newPool(t, "web", "10.0.0.0/32", "2001:db8::/128")},
			before: []Request{dual("x", RequireDualStack)},
			req:    dual("a", PreferDualStack),
			err:    &errOf{PoolExhausted, `pool "web" has no free IPv4 address`},
		},
		{
			name:  "PreferDualStack does not skip a missing requested pool",
			pools: []Pool{v4only(t)},
			req:   req(dual("a", PreferDualStack), func(r *Request) { r.Pool = "gone" }),
			err:   &errOf{NoPool, `pool "gone" does not exist`},
		},
		{
			name:  "SingleStack IPv6 without an IPv6 pool",
			pools: []Pool{v4only(t)},
			req:   v6("a"),
			err:   &errOf{FamilyUnavailable, "no auto-assign pool admitting this service has IPv6 addresses"},
		},
		{
			name:  "requested addresses define the families",
			pools: []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")},
			req:   req(dual("a", PreferDualStack), func(r *Request) { r.IPs = addrs("2001:db8::3") }),
			want:  []Assigned{in("2001:db8::3", "web")},
		},
		{
			name:  "two requested addresses, in the order of the families",
			pools: []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")},
			req:   req(dual("a", RequireDualStack), func(r *Request) { r.IPs = addrs("2001:db8::3", "10.0.0.2") }),
			want:  []Assigned{in("10.0.0.2", "web"), in("2001:db8::3", "web")},
		},
		{
			name:  "two requested addresses without families, in their order",
			pools: []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")},
			req:   Request{Service: "ns/a", Policy: PreferDualStack, IPs: addrs("2001:db8::3", "10.0.0.2")},
			want:  []Assigned{in("2001:db8::3", "web"), in("10.0.0.2", "web")},
		},
		{
			name:   "a requested address of the second family does not fall back",
			pools:  []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")},
			before: []Request{req(v6("x"), func(r *Request) { r.IPs = addrs("2001:db8::3") })},
			req:    req(dual("a", RequireDualStack), func(r *Request) { r.IPs = addrs("10.0.0.1", "2001:db8::3") }),
			err:    &errOf{RequestedIPUnavailable, "2001:db8::3 is in use by ns/x (neither has a sharing key)"},
		},
	})
}

func TestInvalidRequests(t *testing.T) {
	pools := []Pool{newPool(t, "web", "10.0.0.0/30", "2001:db8::/126")}
	runScenarios(t, []scenario{
		{name: "no service", pools: pools, req: Request{Families: []Family{IPv4}},
			err: &errOf{InvalidRequest, "the request names no service"}},
		{name: "no family", pools: pools, req: Request{Service: "ns/a"},
			err: &errOf{InvalidRequest, "the service has no ipFamilies"}},
		{name: "unknown family", pools: pools, req: Request{Service: "ns/a", Families: []Family{5}},
			err: &errOf{InvalidRequest, "unknown ip family 5"}},
		{name: "family twice", pools: pools, req: Request{Service: "ns/a", Families: []Family{IPv4, IPv4}, Policy: PreferDualStack},
			err: &errOf{InvalidRequest, "ip family IPv4 is listed twice"}},
		{name: "three families", pools: pools, req: Request{Service: "ns/a", Families: []Family{IPv4, IPv6, IPv4}},
			err: &errOf{InvalidRequest, "at most 2 ipFamilies, got 3"}},
		{name: "unknown policy", pools: pools, req: Request{Service: "ns/a", Families: []Family{IPv4}, Policy: 7},
			err: &errOf{InvalidRequest, "unknown ipFamilyPolicy 7"}},
		{name: "SingleStack with two families", pools: pools, req: dual("a", SingleStack),
			err: &errOf{InvalidRequest, "SingleStack needs 1 ipFamily, got 2"}},
		{name: "RequireDualStack with one family", pools: pools, req: req(v4("a"), func(r *Request) { r.Policy = RequireDualStack }),
			err: &errOf{InvalidRequest, "RequireDualStack needs 2 ipFamilies, got 1"}},
		{name: "two requested IPv4 addresses", pools: pools, req: req(dual("a", RequireDualStack), func(r *Request) { r.IPs = addrs("10.0.0.1", "10.0.0.2") }),
			err: &errOf{InvalidRequest, "two IPv4 addresses requested (10.0.0.1 and 10.0.0.2)"}},
		{name: "requested address of another family", pools: pools, req: req(v4("a"), func(r *Request) { r.IPs = addrs("2001:db8::1") }),
			err: &errOf{InvalidRequest, "requested address 2001:db8::1 is IPv6, which is not one of the service's ipFamilies [IPv4]"}},
		{name: "SingleStack with two requested addresses", pools: pools, req: req(v4("a"), func(r *Request) { r.IPs = addrs("10.0.0.1", "2001:db8::1") }),
			err: &errOf{InvalidRequest, "SingleStack allows 1 requested address, got 2"}},
		{name: "RequireDualStack with one requested address", pools: pools, req: req(dual("a", RequireDualStack), func(r *Request) { r.IPs = addrs("10.0.0.1") }),
			err: &errOf{InvalidRequest, "RequireDualStack needs one requested address per family, got 1"}},
		{name: "requested address with a zone", pools: pools, req: req(v6("a"), func(r *Request) { r.IPs = addrs("fe80::1%eth0") }),
			err: &errOf{InvalidRequest, "requested address: fe80::1%eth0 has a zone"}},
		{name: "requested IPv4-mapped address", pools: pools, req: req(v6("a"), func(r *Request) { r.IPs = addrs("::ffff:10.0.0.1") }),
			err: &errOf{InvalidRequest, "requested address: ::ffff:10.0.0.1 is an IPv4-mapped IPv6 address"}},
		{name: "requested zero address", pools: pools, req: req(v4("a"), func(r *Request) { r.IPs = []netip.Addr{{}} }),
			err: &errOf{InvalidRequest, "requested address: invalid address"}},
	})
}
