package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PoolFinalizer keeps an IPPool while Services hold its addresses.
const PoolFinalizer = v1alpha1.GroupName + "/pool-protection"

// Reasons of IPPool conditions.
const (
	reasonValid             = "Valid"
	reasonInvalid           = "InvalidAddresses"
	reasonOverlap           = "Overlap"
	reasonNoOverlap         = "NoOverlap"
	reasonDeleting          = "Deleting"
	reasonAddressesInUse    = "AddressesInUse"
	reasonNoAddressesInUse  = "NoAddressesOutside"
	reasonAddressesReserved = "NodeOrAPIServerAddresses"
)

// poolView is what the controller knows of one IPPool after the last SetPools.
type poolView struct {
	invalid  error                 // compile error
	overlap  []allocator.Overlap   // overlaps that disabled it
	outside  []allocator.Outside   // held addresses it no longer contains
	stats    []allocator.PoolStats // per family
	deleting bool
	ranges   []allocator.Range // a deleting pool's addresses (it is not compiled)
	reserved []string          // its reserved addresses, with why
}

// desiredPoolStatus computes an IPPool's status from the allocator's view.
func desiredPoolStatus(p *v1alpha1.IPPool, v poolView) v1alpha1.IPPoolStatus {
	st := *p.Status.DeepCopy()
	st.ObservedGeneration = p.Generation
	st.IPv4, st.IPv6 = nil, nil
	for _, s := range v.stats {
		c := &v1alpha1.IPPoolAddressCounts{Total: s.Total.String(), Assigned: s.Assigned.String(), Available: s.Available.String()}
		if s.Family == allocator.IPv4 {
			st.IPv4 = c
		} else {
			st.IPv6 = c
		}
	}
	set := func(typ string, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: p.Generation})
	}

	switch {
	case v.deleting && len(v.outside) > 0:
		set(v1alpha1.IPPoolReady, false, reasonDeleting, "deletion waits until no Service holds an address of the pool: "+describeOutside(v.outside))
	case v.deleting:
		set(v1alpha1.IPPoolReady, false, reasonDeleting, "the pool is being deleted")
	case v.invalid != nil:
		set(v1alpha1.IPPoolReady, false, reasonInvalid, v.invalid.Error())
	case len(v.overlap) > 0:
		set(v1alpha1.IPPoolReady, false, reasonOverlap, "not used for allocation while it overlaps another pool")
	default:
		set(v1alpha1.IPPoolReady, true, reasonValid, "addresses can be allocated")
	}
	if len(v.overlap) > 0 {
		var parts []string
		for _, o := range v.overlap {
			parts = append(parts, fmt.Sprintf("overlaps pool %s on %s", o.With, o.Range))
		}
		set(v1alpha1.IPPoolOverlap, true, reasonOverlap, strings.Join(parts, "; ")+"; pool "+v.overlap[0].With+" is older and keeps the addresses")
	} else {
		set(v1alpha1.IPPoolOverlap, false, reasonNoOverlap, "no other pool shares an address")
	}
	own, _ := allocator.ParseAddresses(p.Spec.Addresses)
	st.RetainedAddresses = retainedAddresses(v.outside, own)
	if len(v.reserved) > 0 {
		set(v1alpha1.IPPoolAddressesReserved, true, reasonAddressesReserved, describeReserved(v.reserved))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.IPPoolAddressesReserved)
	}
	if len(v.outside) > 0 && !v.deleting {
		set(v1alpha1.IPPoolAddressesInUse, true, reasonAddressesInUse, "addresses removed from the pool are still held: "+describeOutside(v.outside))
	} else {
		set(v1alpha1.IPPoolAddressesInUse, false, reasonNoAddressesInUse, "every held address is in the pool")
	}
	return st
}

// maxRetained bounds status.retainedAddresses (the CRD's maxItems).
const maxRetained = 4096

// retainedAddresses lists the held addresses attributed to a pool that are outside its own
// ranges, lowest first, at most maxRetained.
func retainedAddresses(out []allocator.Outside, own []allocator.Range) []string {
	addrs := make([]netip.Addr, 0, len(out))
	for _, o := range out {
		if !slices.ContainsFunc(own, func(r allocator.Range) bool { return r.Contains(o.Addr) }) {
			addrs = append(addrs, o.Addr)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	if len(addrs) > maxRetained {
		addrs = addrs[:maxRetained]
	}
	var list []string
	for _, a := range addrs {
		list = append(list, a.String())
	}
	return list
}

func describeOutside(out []allocator.Outside) string {
	const max = 10
	var parts []string
	for i, o := range out {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(out)-max))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", o.Addr, strings.Join(o.Services, ", ")))
	}
	return strings.Join(parts, ", ")
}

// poolStatusEqual compares statuses without the conditions' transition times.
func poolStatusEqual(a, b v1alpha1.IPPoolStatus) bool {
	counts := func(x, y *v1alpha1.IPPoolAddressCounts) bool {
		return (x == nil) == (y == nil) && (x == nil || *x == *y)
	}
	return a.ObservedGeneration == b.ObservedGeneration && counts(a.IPv4, b.IPv4) && counts(a.IPv6, b.IPv6) &&
		slices.Equal(a.RetainedAddresses, b.RetainedAddresses) && conditionsEqual(a.Conditions, b.Conditions)
}
