package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Reason classifies why an allocation failed. Its values are the reasons of
// the Service condition ironlb.io/IPAllocated.
type Reason string

// The reasons.
const (
	// NoPool: the Service may draw from no pool (the requested pool does not
	// exist, is disabled or does not admit it; or no auto-assign pool
	// admits it).
	NoPool Reason = "NoPool"
	// PoolExhausted: the pools the Service may draw from have addresses of
	// the family, but none is free.
	PoolExhausted Reason = "PoolExhausted"
	// RequestedIPUnavailable: a requested address is held by a Service it
	// cannot be shared with, or its pool refuses it (disabled pool,
	// restriction, AvoidBuggyIPs).
	RequestedIPUnavailable Reason = "RequestedIPUnavailable"
	// RequestedIPOutsidePools: a requested address is in no pool.
	RequestedIPOutsidePools Reason = "RequestedIPOutsidePools"
	// SharingConflict: an address is held under the same sharing key, but
	// the ports overlap or the backends differ (externalTrafficPolicy or
	// endpoint selector).
	SharingConflict Reason = "SharingConflict"
	// FamilyUnavailable: no pool the Service may draw from has addresses of
	// a family it needs.
	FamilyUnavailable Reason = "FamilyUnavailable"
	// AddressReserved: a requested address is reserved: a node's or the API
	// server's address, which no Service may take over (SetReserved).
	AddressReserved Reason = "AddressReserved"
	// InvalidRequest: the request contradicts itself (two addresses of one
	// family, an address of a family the Service does not have, ...).
	InvalidRequest Reason = "InvalidRequest"
)

// Error is the error returned by Allocate and Restore. Its message is meant
// for a human reading the Service's condition, e.g.
// `pool "web" has no free IPv6 address`.
type Error struct {
	Reason  Reason
	Pool    string     // the pool concerned, if one is
	Addr    netip.Addr // the address concerned, if one is
	Family  Family     // the family concerned, if one is
	Holders []string   // the Services holding Addr, for a conflict
	msg     string
}

func (e *Error) Error() string { return e.msg }

// ReasonOf returns the Reason of err if it is (or wraps) an *Error, and ""
// otherwise.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func invalid(format string, args ...any) *Error {
	return &Error{Reason: InvalidRequest, msg: fmt.Sprintf(format, args...)}
}

func noPool(pool string, format string, args ...any) *Error {
	return &Error{Reason: NoPool, Pool: pool, msg: fmt.Sprintf(format, args...)}
}

// unavailable is a RequestedIPUnavailable error about a.
func unavailable(a netip.Addr, pool string, format string, args ...any) *Error {
	return &Error{Reason: RequestedIPUnavailable, Addr: a, Pool: pool, Family: FamilyOf(a), msg: fmt.Sprintf(format, args...)}
}

func familyUnavailable(f Family, pool string, format string, args ...any) *Error {
	return &Error{Reason: FamilyUnavailable, Family: f, Pool: pool, msg: fmt.Sprintf(format, args...)}
}

// exhausted reports that none of pools has a free address of family f.
func exhausted(f Family, pools []*pool) *Error {
	if len(pools) == 1 {
		return &Error{Reason: PoolExhausted, Family: f, Pool: pools[0].Name,
			msg: fmt.Sprintf("pool %q has no free %s address", pools[0].Name, f)}
	}
	names := make([]string, len(pools))
	for i, p := range pools {
		names[i] = fmt.Sprintf("%q", p.Name)
	}
	return &Error{Reason: PoolExhausted, Family: f,
		msg: fmt.Sprintf("no free %s address in pools %s", f, strings.Join(names, ", "))}
}

// inUse reports that a is held by Services it cannot be shared with.
func inUse(a netip.Addr, holders []string, why string) *Error {
	return &Error{Reason: RequestedIPUnavailable, Addr: a, Family: FamilyOf(a), Holders: holders,
		msg: fmt.Sprintf("%s is in use by %s (%s)", a, strings.Join(holders, ", "), why)}
}

// conflict reports that a is held under the same sharing key, but cannot be
// shared with this Service.
func conflict(a netip.Addr, holders []string, format string, args ...any) *Error {
	return &Error{Reason: SharingConflict, Addr: a, Family: FamilyOf(a), Holders: holders,
		msg: fmt.Sprintf("%s cannot be shared: ", a) + fmt.Sprintf(format, args...)}
}
