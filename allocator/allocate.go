package allocator

import (
	"fmt"
	"net/netip"
)

// Allocate gives req.Service its addresses and returns them.
//
// It is idempotent: an address the Service already holds is kept as long as
// the request itself does not rule it out (another requested address,
// another requested pool, a family no longer wanted, sharing attributes
// incompatible with its co-holders). Changes to pools never move a held
// address, even one now outside every pool or in a pool that no longer
// admits the Service. Each family the Service lacks is drawn:
//
//  1. the requested address of that family, if any;
//  2. else from the requested pool, if any;
//  3. else from the enabled auto-assign pools that admit the Service:
//     restricted ones by priority then name, then unrestricted ones by name.
//
// Within the candidate pools, a Service with a sharing key first takes an
// address already held under that key that it may share (the first pool in
// that order holding one, lowest address first); otherwise it takes the
// lowest free address of the first pool that has one.
//
// PreferDualStack skips a family that has no pool or no free address, as
// long as one family succeeds; SingleStack and RequireDualStack fail.
//
// On failure nothing changes: a Service that held addresses still holds
// them, and the error, an *Error, says why (see Reason).
func (a *Allocator) Allocate(req Request) (Assignment, error) {
	var w want
	if err := w.init(&req); err != nil {
		return Assignment{}, err
	}
	s := a.services[req.Service]
	var plan [2]netip.Addr
	n := 0
	var skipped error
	for _, f := range w.familyList() {
		if r := s.holding(f); r != nil && a.keepable(&w, s, r) {
			plan[n] = r.addr
			n++
			continue
		}
		addr, err := a.pick(&w, s, f)
		if err != nil {
			if w.policy == PreferDualStack && !w.requested() && (err.Reason == FamilyUnavailable || err.Reason == PoolExhausted) {
				if skipped == nil {
					skipped = err
				}
				continue
			}
			return Assignment{}, err
		}
		plan[n] = addr
		n++
	}
	if n == 0 {
		return Assignment{}, skipped
	}
	if s.same(w.share, w.ports, plan[:n]) {
		return s.assignment(), nil
	}
	return a.commit(req.Service, w.share, w.ports, plan[:n]).assignment(), nil
}

// keepable reports whether s may keep r's address under request w.
func (a *Allocator) keepable(w *want, s *service, r *record) bool {
	if w.requested() {
		if w.ip(FamilyOf(r.addr)) != r.addr {
			return false
		}
	} else if w.pool != "" {
		// An address the requested pool lost in a shrink is kept.
		in := r.last
		if r.pool != nil {
			in = r.pool.Name
		}
		if in != w.pool {
			return false
		}
	}
	return compatible(w.share, w.ports, s, r) == nil
}

// pick chooses a new address of family f for w; s is the Service's current
// record, nil if it holds nothing.
func (a *Allocator) pick(w *want, s *service, f Family) (netip.Addr, *Error) {
	if ip := w.ip(f); ip.IsValid() {
		return ip, a.checkRequested(w, s, ip)
	}
	pools, err := a.candidates(w, f)
	if err != nil {
		return netip.Addr{}, err
	}
	if w.share.key != "" {
		if addr, ok := a.shared(w, s, f, pools); ok {
			return addr, nil
		}
	}
	for _, p := range pools {
		if addr, ok := p.fam(f).free.lowest(); ok {
			return addr, nil
		}
	}
	return netip.Addr{}, exhausted(f, pools)
}

// candidates returns the enabled pools with addresses of family f that w may
// draw from without requesting an address, in allocation order. The slice is
// reused by the next call.
func (a *Allocator) candidates(w *want, f Family) ([]*pool, *Error) {
	if name := w.pool; name != "" {
		p := a.byName[name]
		switch {
		case p == nil:
			return nil, noPool(name, "pool %q does not exist", name)
		case !p.enabled:
			return nil, noPool(name, "pool %q is disabled: it overlaps pool %q", name, p.overlap)
		case !p.admits(w):
			return nil, noPool(name, "pool %q does not admit this service: %s", name, p.refusal(w))
		case !p.has(f):
			return nil, familyUnavailable(f, name, "pool %q has no %s addresses", name, f)
		}
		a.scratch = append(a.scratch[:0], p)
		return a.scratch, nil
	}
	a.scratch = a.scratch[:0]
	admitted := false
	for _, p := range a.auto {
		if p.admits(w) {
			admitted = true
			if p.has(f) {
				a.scratch = append(a.scratch, p)
			}
		}
	}
	switch {
	case !admitted:
		return nil, noPool("", "no auto-assign pool admits this service")
	case len(a.scratch) == 0:
		return nil, familyUnavailable(f, "", "no auto-assign pool admitting this service has %s addresses", f)
	}
	return a.scratch, nil
}

// shared returns the first address of family f, held under w's sharing key
// in one of pools, that w may share.
func (a *Allocator) shared(w *want, s *service, f Family, pools []*pool) (netip.Addr, bool) {
	held := a.byKey[w.share.key]
	for _, p := range pools {
		for _, r := range held {
			if r.pool == p && FamilyOf(r.addr) == f && p.allocatable(r.addr) && compatible(w.share, w.ports, s, r) == nil {
				return r.addr, true
			}
		}
	}
	return netip.Addr{}, false
}

// checkRequested reports why w may not have the requested address ip.
func (a *Allocator) checkRequested(w *want, s *service, ip netip.Addr) *Error {
	p := a.poolOf(ip)
	if p == nil {
		return &Error{Reason: RequestedIPOutsidePools, Addr: ip, Family: FamilyOf(ip),
			msg: ip.String() + " is in no pool"}
	}
	if name := w.pool; name != "" && p.Name != name {
		if rp := a.byName[name]; rp == nil || !rp.contains(ip) {
			return invalid("%s is not in the requested pool %q", ip, name)
		}
		p = a.byName[name] // also holds ip, and is disabled by p
	}
	switch {
	case !p.enabled:
		return unavailable(ip, p.Name, "%s is in pool %q, which is disabled: it overlaps pool %q", ip, p.Name, p.overlap)
	case !p.admits(w):
		return unavailable(ip, p.Name, "%s is in pool %q, which does not admit this service: %s", ip, p.Name, p.refusal(w))
	case !p.allocatable(ip):
		return unavailable(ip, p.Name, "%s ends in .0 or .255, which pool %q avoids", ip, p.Name)
	}
	if r := a.addrs[ip]; r != nil {
		return compatible(w.share, w.ports, s, r)
	}
	if why, ok := a.reserved[ip]; ok {
		return &Error{Reason: AddressReserved, Addr: ip, Pool: p.Name, Family: FamilyOf(ip), msg: fmt.Sprintf("%s is reserved: %s", ip, why)}
	}
	return nil
}

// Restore records that req.Service holds exactly ips, as it did before a
// restart, and returns the Assignment. Only the Service key and the sharing
// fields of req are used. Pools are not consulted: an address outside every
// pool, in a disabled pool, in a pool that would not admit the Service or
// that avoids it is restored all the same (and shows as Assigned.Pool ""
// when outside). Restore refuses only a true conflict with the Services
// already holding one of ips (see Request on sharing), with
// RequestedIPUnavailable or SharingConflict; so the Service restored first
// wins, and the controller should restore in a stable order (oldest first).
// It replaces whatever req.Service held.
func (a *Allocator) Restore(req Request, ips []netip.Addr) (Assignment, error) {
	if req.Service == "" {
		return Assignment{}, invalid("the request names no service")
	}
	if len(ips) == 0 {
		return Assignment{}, invalid("no address to restore")
	}
	var byFamily [2]netip.Addr
	if err := requestedIPs(&byFamily, ips); err != nil {
		return Assignment{}, err
	}
	sh, ports := shareOf(&req), normalPorts(req.Ports)
	s := a.services[req.Service]
	for _, ip := range ips {
		if r := a.addrs[ip]; r != nil {
			if err := compatible(sh, ports, s, r); err != nil {
				return Assignment{}, err
			}
		}
	}
	return a.commit(req.Service, sh, ports, ips).assignment(), nil
}
