package allocator

import (
	"maps"
	"net/netip"
)

// SetReserved replaces the set of reserved addresses, each with why it is reserved (e.g. "the
// InternalIP of node n1"). A reserved address is never handed out: Allocate does not pick it
// and refuses it when requested (AddressReserved), and it does not count as Available. A
// Service that already holds one keeps it (an address never moves); once released it is not
// free again while reserved. The controller reserves the nodes' and the API server's
// addresses, which a Service must never take over.
func (a *Allocator) SetReserved(reserved map[netip.Addr]string) {
	old := a.reserved
	a.reserved = maps.Clone(reserved)
	for addr := range old {
		if _, still := a.reserved[addr]; !still {
			a.unreserve(addr)
		}
	}
	for addr := range a.reserved {
		if _, was := old[addr]; !was {
			a.reserve(addr)
		}
	}
}

// Reserved returns the reserved addresses with why.
func (a *Allocator) Reserved() map[netip.Addr]string { return maps.Clone(a.reserved) }

// reserve takes a free reserved address out of its pool's free space.
func (a *Allocator) reserve(addr netip.Addr) {
	if a.addrs[addr] != nil {
		return // held: not free anyway
	}
	if p := a.poolOf(addr); p != nil {
		if pf := p.fam(FamilyOf(addr)); pf.free != nil {
			pf.free.take(addr)
		}
	}
}

// unreserve returns an address no longer reserved to its pool's free space.
func (a *Allocator) unreserve(addr netip.Addr) {
	if a.addrs[addr] != nil {
		return
	}
	if p := a.poolOf(addr); p != nil && p.allocatable(addr) {
		if pf := p.fam(FamilyOf(addr)); pf.free != nil {
			pf.free.put(addr)
		}
	}
}
