package allocator

import (
	"net/netip"
	"testing"
)

// Reserved addresses (a node's, the API server's) are never handed out: not as the lowest free
// address, not on request; a Service that held one before keeps it; Available leaves them out.
func TestReservedAddresses(t *testing.T) {
	a := New()
	if rep := a.SetPools([]Pool{newPool(t, "lan", "198.51.100.0/30")}); len(rep.Invalid)+len(rep.Overlaps) > 0 {
		t.Fatalf("SetPools: %+v", rep)
	}
	// Held before the address became reserved (a node joined with it): kept.
	if _, err := a.Allocate(with1(v4("old"), "198.51.100.2")); err != nil {
		t.Fatal(err)
	}
	a.SetReserved(map[netip.Addr]string{addr("198.51.100.0"): "the InternalIP of node n1", addr("198.51.100.2"): "the InternalIP of node n2"})
	if err := a.verify(); err != nil {
		t.Fatal(err)
	}

	as, err := a.Allocate(v4("first"))
	if err != nil || as.IPs[0].Addr != addr("198.51.100.1") {
		t.Fatalf("first: %+v, %v; want 198.51.100.1 (.0 is reserved)", as, err)
	}
	_, err = a.Allocate(with1(v4("asks"), "198.51.100.0"))
	if ReasonOf(err) != AddressReserved || err.Error() != "198.51.100.0 is reserved: the InternalIP of node n1" {
		t.Fatalf("asking for a reserved address: %v (reason %q), want AddressReserved naming the node", err, ReasonOf(err))
	}
	if as, _ := a.Assignment("ns/old"); len(as.IPs) != 1 || as.IPs[0].Addr != addr("198.51.100.2") {
		t.Errorf("old: %+v, want 198.51.100.2 kept", as)
	}
	if st := a.Stats(); len(st) != 1 || st[0].Available != CountOf(1) {
		t.Errorf("stats %+v, want 1 available (.3)", st)
	}
	// Released: not free again while reserved.
	a.Release("ns/old")
	if st := a.Stats(); st[0].Available != CountOf(1) {
		t.Errorf("after releasing a reserved address: %+v, want 1 available", st)
	}
	// Pools recompiled: still reserved.
	a.SetPools([]Pool{newPool(t, "lan", "198.51.100.0/30")})
	if st := a.Stats(); st[0].Available != CountOf(1) {
		t.Errorf("after SetPools: %+v, want 1 available", st)
	}
	if err := a.verify(); err != nil {
		t.Fatal(err)
	}
	// No longer reserved: free again.
	a.SetReserved(nil)
	if st := a.Stats(); st[0].Available != CountOf(3) {
		t.Errorf("after unreserving: %+v, want 3 available", st)
	}
	if err := a.verify(); err != nil {
		t.Fatal(err)
	}
	if got := a.Reserved(); len(got) != 0 {
		t.Errorf("Reserved() = %v, want none", got)
	}
}

func with1(r Request, ip string) Request {
	r.IPs = addrs(ip)
	return r
}
