package allocator

import (
	"net/netip"
	"slices"
	"strings"
)

// This file holds the only code that changes who holds what. The indexes
// (Allocator.addrs, .services, .byKey, each pool's counters and free space)
// are derived from one relation, "service s holds address a", and are
// updated together by hold, unhold and reshare; everything else only reads
// them or calls commit.

// service is a Service that holds at least one address.
type service struct {
	name  string
	share share
	ports []Port    // sorted, without duplicates, owned
	addrs []*record // in assignment order, at most one per family
}

// record is one held address and its holders.
type record struct {
	addr    netip.Addr
	pool    *pool      // the pool the address is attributed to; nil when in none
	last    string     // the last pool that contained the address, "" if none ever did
	share   share      // common to all holders
	holders []*service // sorted by name, never empty
}

func (r *record) holderNames(except *service) []string {
	names := make([]string, 0, len(r.holders))
	for _, h := range r.holders {
		if h != except {
			names = append(names, h.name)
		}
	}
	return names
}

// Assignment is what a Service holds.
type Assignment struct {
	Service string
	IPs     []Assigned // at most one per family, primary family first
}

// Assigned is one address of an Assignment.
type Assigned struct {
	Addr netip.Addr
	Pool string // the pool the address is in; "" when it is in no pool
}

// Addrs returns the addresses of a.
func (a Assignment) Addrs() []netip.Addr {
	addrs := make([]netip.Addr, len(a.IPs))
	for i, ip := range a.IPs {
		addrs[i] = ip.Addr
	}
	return addrs
}

func (s *service) assignment() Assignment {
	as := Assignment{Service: s.name, IPs: make([]Assigned, len(s.addrs))}
	for i, r := range s.addrs {
		as.IPs[i] = Assigned{Addr: r.addr, Pool: r.poolName()}
	}
	return as
}

func (r *record) poolName() string {
	if r.pool == nil {
		return ""
	}
	return r.pool.Name
}

// holding returns the record of s's address of family f, if any. s may be nil.
func (s *service) holding(f Family) *record {
	if s == nil {
		return nil
	}
	for _, r := range s.addrs {
		if FamilyOf(r.addr) == f {
			return r
		}
	}
	return nil
}

// same reports whether s already is exactly what commit would make of it.
func (s *service) same(sh share, ports []Port, addrs []netip.Addr) bool {
	if s == nil || s.share != sh || !slices.Equal(s.ports, ports) || len(s.addrs) != len(addrs) {
		return false
	}
	for i, r := range s.addrs {
		if r.addr != addrs[i] {
			return false
		}
	}
	return true
}

// compatible reports why a Service with sharing attributes sh and ports,
// currently recorded as s (nil if it holds nothing), cannot hold r's
// address beside r's other holders. It returns nil if it can.
func compatible(sh share, ports []Port, s *service, r *record) *Error {
	others := 0
	for _, h := range r.holders {
		if h != s {
			others++
		}
	}
	switch {
	case others == 0:
		return nil
	case sh.key == "" && r.share.key == "":
		return inUse(r.addr, r.holderNames(s), "neither has a sharing key")
	case sh.key == "":
		return inUse(r.addr, r.holderNames(s), "this service has no sharing key")
	case r.share.key != sh.key:
		if r.share.key == "" {
			return inUse(r.addr, r.holderNames(s), "it is not shared")
		}
		return inUse(r.addr, r.holderNames(s), "under another sharing key")
	case r.share.local != sh.local:
		return conflict(r.addr, r.holderNames(s), "its services use externalTrafficPolicy %s, this one %s",
			policyName(r.share.local), policyName(sh.local))
	case r.share.selector != sh.selector:
		return conflict(r.addr, r.holderNames(s), "its services (externalTrafficPolicy Local) select other endpoints")
	}
	for _, h := range r.holders {
		if h == s {
			continue
		}
		if p, ok := commonPort(ports, h.ports); ok {
			return conflict(r.addr, []string{h.name}, "port %s is used by %s", p, h.name)
		}
	}
	return nil
}

func policyName(local bool) string {
	if local {
		return "Local"
	}
	return "Cluster"
}

// commit makes the Service named name hold exactly addrs, in that order,
// with sharing attributes sh and ports. The caller has checked that each
// address is compatible with its other holders. With no addrs the Service is
// forgotten. It returns the Service's record, or nil if it holds nothing.
func (a *Allocator) commit(name string, sh share, ports []Port, addrs []netip.Addr) *service {
	s := a.services[name]
	if s == nil {
		if len(addrs) == 0 {
			return nil
		}
		s = &service{name: name}
		a.services[name] = s
	}
	kept := make([]*record, 0, len(addrs))
	for _, r := range s.addrs {
		if slices.Contains(addrs, r.addr) {
			kept = append(kept, r)
		} else {
			a.unhold(s, r)
		}
	}
	if !slices.Equal(s.ports, ports) {
		s.ports = slices.Clone(ports)
	}
	a.reshare(s, kept, sh)
	s.addrs = kept
	for _, addr := range addrs {
		if !slices.ContainsFunc(kept, func(r *record) bool { return r.addr == addr }) {
			s.addrs = append(s.addrs, a.hold(s, addr))
		}
	}
	// Put the records in the order of addrs.
	slices.SortFunc(s.addrs, func(x, y *record) int {
		return slices.Index(addrs, x.addr) - slices.Index(addrs, y.addr)
	})
	if len(s.addrs) == 0 {
		delete(a.services, name)
		return nil
	}
	return s
}

// hold records that s holds addr.
func (a *Allocator) hold(s *service, addr netip.Addr) *record {
	r := a.addrs[addr]
	if r == nil {
		r = &record{addr: addr, share: s.share}
		a.addrs[addr] = r
		a.attribute(r)
		a.index(r)
	}
	i, _ := slices.BinarySearchFunc(r.holders, s.name, func(h *service, name string) int {
		return strings.Compare(h.name, name)
	})
	r.holders = slices.Insert(r.holders, i, s)
	return r
}

// unhold records that s no longer holds r's address; the address is freed
// when s was its last holder.
func (a *Allocator) unhold(s *service, r *record) {
	if i := slices.Index(r.holders, s); i >= 0 {
		r.holders = slices.Delete(r.holders, i, i+1)
	}
	if len(r.holders) > 0 {
		return
	}
	a.unindex(r)
	if r.pool != nil {
		pf := r.pool.fam(FamilyOf(r.addr))
		pf.assigned--
		if _, reserved := a.reserved[r.addr]; pf.free != nil && !reserved {
			pf.free.put(r.addr) // refuses an address the pool does not allocate
		}
	}
	delete(a.addrs, r.addr)
}

// reshare sets the sharing attributes of s, whose records are rs. An address
// held by others already has sh (the caller checked compatibility), so only
// addresses s holds alone can change key.
func (a *Allocator) reshare(s *service, rs []*record, sh share) {
	s.share = sh
	for _, r := range rs {
		if r.share != sh {
			a.unindex(r)
			r.share = sh
			a.index(r)
		}
	}
}

// attribute finds the pool of r's address (the first pool in precedence
// order that contains it), counts it there and takes it from its free
// space. r.pool must not be counted anywhere yet.
func (a *Allocator) attribute(r *record) {
	r.pool = a.poolOf(r.addr)
	if r.pool == nil {
		return
	}
	r.last = r.pool.Name
	pf := r.pool.fam(FamilyOf(r.addr))
	pf.assigned++
	if pf.free != nil {
		pf.free.take(r.addr)
	}
}

// poolOf returns the first pool, in precedence order, that contains addr.
// When addr is in an enabled pool, that is the one: a pool of higher
// precedence containing addr would overlap it and disable it.
func (a *Allocator) poolOf(addr netip.Addr) *pool {
	for _, p := range a.pools {
		if p.contains(addr) {
			return p
		}
	}
	return nil
}

// index adds r to the addresses held under its sharing key.
func (a *Allocator) index(r *record) {
	if r.share.key == "" {
		return
	}
	rs := a.byKey[r.share.key]
	i, _ := slices.BinarySearchFunc(rs, r.addr, func(x *record, addr netip.Addr) int { return x.addr.Compare(addr) })
	a.byKey[r.share.key] = slices.Insert(rs, i, r)
}

// unindex is the inverse of index.
func (a *Allocator) unindex(r *record) {
	if r.share.key == "" {
		return
	}
	rs := a.byKey[r.share.key]
	if i := slices.Index(rs, r); i >= 0 {
		rs = slices.Delete(rs, i, i+1)
	}
	if len(rs) == 0 {
		delete(a.byKey, r.share.key)
	} else {
		a.byKey[r.share.key] = rs
	}
}
