package allocator

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/labels"
)

// Test helpers shared by the table tests.

// cmpOpts compares netip values (which have unexported fields) by ==.
var cmpOpts = cmp.Options{cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})}

func ranges(t testing.TB, list ...string) []Range {
	t.Helper()
	rs, err := ParseAddresses(list)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func addrs(list ...string) []netip.Addr {
	var as []netip.Addr
	for _, s := range list {
		as = append(as, addr(s))
	}
	return as
}

// newPool returns an auto-assign pool.
func newPool(t testing.TB, name string, list ...string) Pool {
	t.Helper()
	return Pool{Name: name, AutoAssign: true, Ranges: ranges(t, list...)}
}

// with returns p changed by f.
func with(p Pool, f func(*Pool)) Pool {
	f(&p)
	return p
}

func selector(t testing.TB, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// v4, v6 and dual return requests for a Service in namespace "ns".
func v4(name string) Request {
	return Request{Service: "ns/" + name, Namespace: "ns", Families: []Family{IPv4}}
}

func v6(name string) Request {
	return Request{Service: "ns/" + name, Namespace: "ns", Families: []Family{IPv6}}
}

func dual(name string, p Policy) Request {
	return Request{Service: "ns/" + name, Namespace: "ns", Families: []Family{IPv4, IPv6}, Policy: p}
}

// req returns r changed by f.
func req(r Request, f func(*Request)) Request {
	f(&r)
	return r
}

// shared returns r with a sharing key and ports ("80/TCP" style).
func shared(r Request, key string, ports ...Port) Request {
	r.SharingKey, r.Ports = key, ports
	return r
}

func tcp(p uint16) Port { return Port{Protocol: "TCP", Port: p} }
func udp(p uint16) Port { return Port{Protocol: "UDP", Port: p} }

// in returns an Assigned.
func in(a, pool string) Assigned { return Assigned{Addr: addr(a), Pool: pool} }

// mustAllocate allocates each request in turn and fails the test on error.
func mustAllocate(t testing.TB, a *Allocator, reqs ...Request) {
	t.Helper()
	for _, r := range reqs {
		if _, err := a.Allocate(r); err != nil {
			t.Fatalf("Allocate(%s): %v", r.Service, err)
		}
	}
}

// newAllocator returns an Allocator with pools, failing on any report.
func newAllocator(t testing.TB, pools ...Pool) *Allocator {
	t.Helper()
	a := New()
	rep := a.SetPools(pools)
	if diff := cmp.Diff(Report{}, rep, cmpOpts); diff != "" {
		t.Fatalf("SetPools report (-want +got):\n%s", diff)
	}
	return a
}

// errOf describes err for comparison: its reason and message.
type errOf struct {
	Reason Reason
	Msg    string
}

func describe(err error) *errOf {
	if err == nil {
		return nil
	}
	return &errOf{Reason: ReasonOf(err), Msg: err.Error()}
}
