package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons of a True ServiceConditionIPAllocated.
const (
	ReasonAllocated = "Allocated"
	// ReasonOutsidePool: the Service keeps an address that its pool no longer contains (the pool
	// shrank or is being deleted). Nothing is taken away; the operator decides.
	ReasonOutsidePool = "AddressesOutsidePool"
)

// outcome is what the controller decided for one Service: the addresses it holds now and the
// condition that explains them.
type outcome struct {
	ips     []netip.Addr
	status  metav1.ConditionStatus
	reason  string
	message string
}

// allocated describes a successful allocation. An address in no pool is either retained by
// the pool it came from (retainedBy names it, "" if none: the pool shrank; the speakers announce
// it as the pool's) or in no pool at all (not announced). retainedBy may be nil.
func allocated(as allocator.Assignment, retainedBy func(netip.Addr) string) outcome {
	o := outcome{ips: as.Addrs(), status: metav1.ConditionTrue, reason: ReasonAllocated}
	var parts []string
	for _, ip := range as.IPs {
		pool := ip.Pool
		switch {
		case pool != "":
			parts = append(parts, fmt.Sprintf("%s from pool %s", ip.Addr, pool))
			continue
		case retainedBy != nil:
			pool = retainedBy(ip.Addr)
		}
		o.reason = ReasonOutsidePool
		if pool != "" {
			parts = append(parts, fmt.Sprintf("%s retained by pool %s, which no longer contains it: kept, and announced as the pool's, until the Service releases it", ip.Addr, pool))
		} else {
			parts = append(parts, fmt.Sprintf("%s in no pool: kept until the Service releases it, and not announced until a pool contains it", ip.Addr))
		}
	}
	o.message = strings.Join(parts, "; ")
	if o.reason == ReasonAllocated {
		o.message = strings.Join(parts, ", ")
	}
	return o
}

// failed describes an allocation that failed; the Service keeps what it held (held).
func failed(err error, held allocator.Assignment) outcome {
	reason := string(allocator.ReasonOf(err))
	var re *config.RequestError
	if reason == "" || errors.As(err, &re) {
		reason = string(allocator.InvalidRequest)
	}
	msg := err.Error()
	if len(held.IPs) > 0 {
		msg += fmt.Sprintf("; the Service keeps %s", joinAddrs(held.Addrs()))
	}
	return outcome{ips: held.Addrs(), status: metav1.ConditionFalse, reason: reason, message: msg}
}

// applyOutcome returns the Service status that reflects o, and whether it differs from the
// current one (transition times aside). The ingress list is ironlb's (the Service is of its
// class) and is replaced; conditions that are not ironlb's are kept as they are.
func applyOutcome(cur corev1.ServiceStatus, o outcome, generation int64) (corev1.ServiceStatus, bool) {
	next := *cur.DeepCopy()
	vip := corev1.LoadBalancerIPModeVIP
	next.LoadBalancer.Ingress = nil
	for _, ip := range o.ips {
		next.LoadBalancer.Ingress = append(next.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip})
	}
	meta.SetStatusCondition(&next.Conditions, metav1.Condition{
		Type: v1alpha1.ServiceConditionIPAllocated, Status: o.status, Reason: o.reason,
		Message: o.message, ObservedGeneration: generation,
	})
	return next, !statusEqual(cur, next)
}

// clearedStatus removes what ironlb wrote: the ingress addresses and its condition.
func clearedStatus(cur corev1.ServiceStatus) (corev1.ServiceStatus, bool) {
	next := *cur.DeepCopy()
	next.LoadBalancer.Ingress = nil
	meta.RemoveStatusCondition(&next.Conditions, v1alpha1.ServiceConditionIPAllocated)
	return next, !statusEqual(cur, next)
}

func statusEqual(a, b corev1.ServiceStatus) bool {
	if !slices.EqualFunc(a.LoadBalancer.Ingress, b.LoadBalancer.Ingress, func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname && (x.IPMode == nil) == (y.IPMode == nil) &&
			(x.IPMode == nil || *x.IPMode == *y.IPMode)
	}) {
		return false
	}
	return conditionsEqual(a.Conditions, b.Conditions)
}

// conditionsEqual compares conditions without their transition times.
func conditionsEqual(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message &&
			x.ObservedGeneration == y.ObservedGeneration
	})
}

// event is what to tell the operator about a status change; empty when nothing changed that
// an operator should hear of (a transition, not a repeat).
type event struct {
	warning bool
	reason  string
	message string
}

func transition(cur corev1.ServiceStatus, o outcome) (event, bool) {
	old := meta.FindStatusCondition(cur.Conditions, v1alpha1.ServiceConditionIPAllocated)
	oldIPs := ingressIPsOf(cur)
	sameIPs := slices.Equal(oldIPs, o.ips)
	if old != nil && old.Status == o.status && old.Reason == o.reason && sameIPs {
		return event{}, false
	}
	switch {
	case o.status == metav1.ConditionTrue && o.reason == ReasonOutsidePool:
		return event{warning: true, reason: ReasonOutsidePool, message: o.message}, true
	case o.status == metav1.ConditionTrue:
		return event{reason: "IPAllocated", message: "Assigned " + o.message}, true
	default:
		return event{warning: true, reason: "AllocationFailed", message: o.reason + ": " + o.message}, true
	}
}

func ingressIPsOf(st corev1.ServiceStatus) []netip.Addr {
	return config.IngressIPs(&corev1.Service{Status: st})
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
