package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	// addrOpts compares addresses by value.
	addrOpts    = cmpopts.EquateComparable(netip.Addr{})
	outcomeOpts = cmp.Options{addrOpts, cmp.AllowUnexported(outcome{}, event{})}
	// statusOpts ignores transition times, which tests check on their own.
	statusOpts = cmpopts.IgnoreFields(metav1.Condition{}, "LastTransitionTime")
)

func assignment(ipPool ...string) allocator.Assignment {
	as := allocator.Assignment{Service: "ns/web"}
	for i := 0; i < len(ipPool); i += 2 {
		as.IPs = append(as.IPs, allocator.Assigned{Addr: netip.MustParseAddr(ipPool[i]), Pool: ipPool[i+1]})
	}
	return as
}

// allocErrors returns real allocator errors: a PoolExhausted from pool "tiny" and a NoPool
// for pool "nope".
func allocErrors(t *testing.T) (exhausted, noPool error) {
	t.Helper()
	a := allocator.New()
	a.SetPools([]allocator.Pool{{Name: "tiny", AutoAssign: true, Ranges: []allocator.Range{allocator.PrefixRange(netip.MustParsePrefix("198.51.100.1/32"))}}})
	req := func(svc, pool string) allocator.Request {
		return allocator.Request{Service: svc, Namespace: "ns", Pool: pool, Families: []allocator.Family{allocator.IPv4}}
	}
	if _, err := a.Allocate(req("ns/a", "")); err != nil {
		t.Fatal(err)
	}
	_, exhausted = a.Allocate(req("ns/b", ""))
	_, noPool = a.Allocate(req("ns/b", "nope"))
	if allocator.ReasonOf(exhausted) != allocator.PoolExhausted || allocator.ReasonOf(noPool) != allocator.NoPool {
		t.Fatalf("allocator errors %v, %v; want PoolExhausted and NoPool", exhausted, noPool)
	}
	return exhausted, noPool
}

func TestAllocated(t *testing.T) {
	tests := []struct {
		name       string
		as         allocator.Assignment
		retainedBy map[netip.Addr]string
		want       outcome
	}{
		{
			name: "one address: Allocated, naming its pool",
			as:   assignment("198.51.100.1", "a"),
			want: outcome{ips: addrs("198.51.100.1"), status: metav1.ConditionTrue, reason: ReasonAllocated,
				message: "198.51.100.1 from pool a"},
		},
		{
			name: "dual-stack: both addresses in order, each with its pool",
			as:   assignment("2001:db8::1", "v6", "198.51.100.1", "v4"),
			want: outcome{ips: addrs("2001:db8::1", "198.51.100.1"), status: metav1.ConditionTrue, reason: ReasonAllocated,
				message: "2001:db8::1 from pool v6, 198.51.100.1 from pool v4"},
		},
		{
			name: "an address in no pool: still True, AddressesOutsidePool, kept",
			as:   assignment("198.51.100.1", "a", "2001:db8::1", ""),
			want: outcome{ips: addrs("198.51.100.1", "2001:db8::1"), status: metav1.ConditionTrue, reason: ReasonOutsidePool,
				message: "198.51.100.1 from pool a; 2001:db8::1 in no pool: kept until the Service releases it, and not announced until a pool contains it"},
		},
		{
			name: "every address in no pool: no leading separator",
			as:   assignment("198.51.100.1", ""),
			want: outcome{ips: addrs("198.51.100.1"), status: metav1.ConditionTrue, reason: ReasonOutsidePool,
				message: "198.51.100.1 in no pool: kept until the Service releases it, and not announced until a pool contains it"},
		},
		{
			name:       "an address its shrunk pool retains: announced as the pool's",
			as:         assignment("198.51.100.1", ""),
			retainedBy: map[netip.Addr]string{netip.MustParseAddr("198.51.100.1"): "a"},
			want: outcome{ips: addrs("198.51.100.1"), status: metav1.ConditionTrue, reason: ReasonOutsidePool,
				message: "198.51.100.1 retained by pool a, which no longer contains it: kept, and announced as the pool's, until the Service releases it"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, allocated(tt.as, func(a netip.Addr) string { return tt.retainedBy[a] }), outcomeOpts); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFailed(t *testing.T) {
	exhausted, noPool := allocErrors(t)
	tests := []struct {
		name string
		err  error
		held allocator.Assignment
		want outcome
	}{
		{
			name: "an allocator error: its reason and message, no address",
			err:  exhausted,
			want: outcome{status: metav1.ConditionFalse, reason: "PoolExhausted", message: `pool "tiny" has no free IPv4 address`},
		},
		{
			name: "a wrapped allocator error keeps its reason",
			err:  fmt.Errorf("allocating: %w", noPool),
			want: outcome{status: metav1.ConditionFalse, reason: "NoPool", message: `allocating: pool "nope" does not exist`},
		},
		{
			name: "the Service keeps what it held, and the message says so",
			err:  noPool,
			held: assignment("198.51.100.1", "a", "2001:db8::1", "b"),
			want: outcome{ips: addrs("198.51.100.1", "2001:db8::1"), status: metav1.ConditionFalse, reason: "NoPool",
				message: `pool "nope" does not exist; the Service keeps 198.51.100.1, 2001:db8::1`},
		},
		{
			name: "a malformed request is InvalidRequest",
			err:  &config.RequestError{Msg: `annotation ironlb.io/ips: "x" is not an IP address`},
			want: outcome{status: metav1.ConditionFalse, reason: "InvalidRequest", message: `annotation ironlb.io/ips: "x" is not an IP address`},
		},
		{
			name: "an error of unknown kind is InvalidRequest",
			err:  errors.New("something else"),
			want: outcome{status: metav1.ConditionFalse, reason: "InvalidRequest", message: "something else"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := failed(tt.err, tt.held)
			if diff := cmp.Diff(tt.want, got, outcomeOpts, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

var (
	vip    = corev1.LoadBalancerIPModeVIP
	proxy  = corev1.LoadBalancerIPModeProxy
	then   = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	others = metav1.Condition{Type: "example.com/Ready", Status: metav1.ConditionTrue, Reason: "Fine", Message: "theirs", LastTransitionTime: then}
)

// written is a Service status as the controller writes it, the condition set at then.
func written(generation int64, status metav1.ConditionStatus, reason, message string, ips ...string) corev1.ServiceStatus {
	var st corev1.ServiceStatus
	for _, ip := range ips {
		st.LoadBalancer.Ingress = append(st.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip, IPMode: &vip})
	}
	st.Conditions = []metav1.Condition{{Type: v1alpha1.ServiceConditionIPAllocated, Status: status, Reason: reason,
		Message: message, ObservedGeneration: generation, LastTransitionTime: then}}
	return st
}

func withConditions(st corev1.ServiceStatus, conds ...metav1.Condition) corev1.ServiceStatus {
	st.Conditions = append(conds, st.Conditions...)
	return st
}

func TestApplyOutcome(t *testing.T) {
	exhausted, _ := allocErrors(t)
	allocatedA := allocated(assignment("198.51.100.1", "a"), nil)
	const msgA = "198.51.100.1 from pool a"
	tests := []struct {
		name        string
		cur         corev1.ServiceStatus
		o           outcome
		want        corev1.ServiceStatus
		wantChanged bool
		// wantTimeKept: the condition keeps its transition time (then); else it is new.
		wantTimeKept bool
	}{
		{
			name:        "first allocation: the ingress with ipMode VIP and a True condition",
			o:           allocatedA,
			want:        written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			wantChanged: true,
		},
		{
			name:         "the same outcome again: nothing changed, transition time kept",
			cur:          written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			o:            allocatedA,
			want:         written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			wantTimeKept: true,
		},
		{
			name:        "dual-stack: one ingress entry per address, in order",
			o:           allocated(assignment("2001:db8::1", "a", "198.51.100.1", "a"), nil),
			want:        written(7, metav1.ConditionTrue, ReasonAllocated, "2001:db8::1 from pool a, 198.51.100.1 from pool a", "2001:db8::1", "198.51.100.1"),
			wantChanged: true,
		},
		{
			name:        "conditions of others are kept as they are",
			cur:         withConditions(corev1.ServiceStatus{}, others),
			o:           allocatedA,
			want:        withConditions(written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"), others),
			wantChanged: true,
		},
		{
			name:         "a new address: changed; the condition stays True since then",
			cur:          written(7, metav1.ConditionTrue, ReasonAllocated, "198.51.100.2 from pool a", "198.51.100.2"),
			o:            allocatedA,
			want:         written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			wantChanged:  true,
			wantTimeKept: true,
		},
		{
			name:        "failure keeping the address: changed, False since now",
			cur:         written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			o:           failed(exhausted, assignment("198.51.100.1", "a")),
			want:        written(7, metav1.ConditionFalse, "PoolExhausted", `pool "tiny" has no free IPv4 address; the Service keeps 198.51.100.1`, "198.51.100.1"),
			wantChanged: true,
		},
		{
			name:        "failure holding nothing: no ingress",
			o:           failed(exhausted, allocator.Assignment{}),
			want:        withConditions(written(7, metav1.ConditionFalse, "PoolExhausted", `pool "tiny" has no free IPv4 address`)),
			wantChanged: true,
		},
		{
			name:         "only the message differs: changed, transition time kept",
			cur:          written(7, metav1.ConditionFalse, "PoolExhausted", "older words"),
			o:            failed(exhausted, allocator.Assignment{}),
			want:         written(7, metav1.ConditionFalse, "PoolExhausted", `pool "tiny" has no free IPv4 address`),
			wantChanged:  true,
			wantTimeKept: true,
		},
		{
			name:         "only the generation differs: changed",
			cur:          written(6, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			o:            allocatedA,
			want:         written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			wantChanged:  true,
			wantTimeKept: true,
		},
		{
			name: "an ingress entry without ipMode (written by someone else) is rewritten with VIP",
			cur: func() corev1.ServiceStatus {
				st := written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1")
				st.LoadBalancer.Ingress[0].IPMode = nil
				return st
			}(),
			o:            allocatedA,
			want:         written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			wantChanged:  true,
			wantTimeKept: true,
		},
		{
			name: "ipMode Proxy is rewritten with VIP",
			cur: func() corev1.ServiceStatus {
				st := written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1")
				st.LoadBalancer.Ingress[0].IPMode = &proxy
				return st
			}(),
			o:            allocatedA,
			want:         written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			wantChanged:  true,
			wantTimeKept: true,
		},
		{
			name: "a hostname entry is dropped: the ingress list is ironlb's",
			cur: func() corev1.ServiceStatus {
				st := written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1")
				st.LoadBalancer.Ingress = append(st.LoadBalancer.Ingress, corev1.LoadBalancerIngress{Hostname: "lb.example.com"})
				return st
			}(),
			o:            allocatedA,
			want:         written(7, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			wantChanged:  true,
			wantTimeKept: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.cur.DeepCopy()
			got, changed := applyOutcome(tt.cur, tt.o, 7)
			if diff := cmp.Diff(tt.want, got, statusOpts, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			c := got.Conditions[len(got.Conditions)-1]
			if kept := c.LastTransitionTime.Equal(&then); kept != tt.wantTimeKept {
				t.Errorf("transition time %v; kept = %v, want %v", c.LastTransitionTime, kept, tt.wantTimeKept)
			}
			if c.LastTransitionTime.IsZero() {
				t.Error("transition time not set")
			}
			if diff := cmp.Diff(before, &tt.cur); diff != "" {
				t.Errorf("the current status was modified (-before +after):\n%s", diff)
			}
		})
	}
}

func TestClearedStatus(t *testing.T) {
	tests := []struct {
		name        string
		cur         corev1.ServiceStatus
		want        corev1.ServiceStatus
		wantChanged bool
	}{
		{
			name:        "the addresses and the condition go; conditions of others stay",
			cur:         withConditions(written(1, metav1.ConditionTrue, ReasonAllocated, "x", "198.51.100.1"), others),
			want:        withConditions(corev1.ServiceStatus{}, others),
			wantChanged: true,
		},
		{
			name:        "a pending Service: the condition goes",
			cur:         written(1, metav1.ConditionFalse, "PoolExhausted", "x"),
			wantChanged: true,
		},
		{
			name: "nothing of ironlb's: unchanged",
			cur:  withConditions(corev1.ServiceStatus{}, others),
			want: withConditions(corev1.ServiceStatus{}, others),
		},
		{
			name: "an empty status: unchanged",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := clearedStatus(tt.cur)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
		})
	}
}

func TestStatusEqualIgnoresTransitionTimes(t *testing.T) {
	a := written(1, metav1.ConditionTrue, ReasonAllocated, "x", "198.51.100.1")
	b := *a.DeepCopy()
	b.Conditions[0].LastTransitionTime = metav1.NewTime(then.Add(time.Hour))
	if !statusEqual(a, b) {
		t.Error("statuses that differ only in transition time are not equal")
	}
	b.LoadBalancer.Ingress[0].Ports = []corev1.PortStatus{{Port: 80, Protocol: corev1.ProtocolTCP}}
	if !statusEqual(a, b) {
		t.Error("ingress port status (not written by ironlb) makes a difference")
	}
}

func TestTransition(t *testing.T) {
	exhausted, noPool := allocErrors(t)
	const msgA = "198.51.100.1 from pool a"
	allocatedA := allocated(assignment("198.51.100.1", "a"), nil)
	outsideA := allocated(assignment("198.51.100.1", ""), nil)
	tests := []struct {
		name string
		cur  corev1.ServiceStatus
		o    outcome
		want *event // nil: no event
	}{
		{
			name: "first allocation: Normal IPAllocated",
			o:    allocatedA,
			want: &event{reason: "IPAllocated", message: "Assigned " + msgA},
		},
		{
			name: "the same allocation again: no event",
			cur:  written(1, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			o:    allocatedA,
		},
		{
			name: "same addresses, a different message: no event",
			cur:  written(1, metav1.ConditionTrue, ReasonAllocated, "worded otherwise", "198.51.100.1"),
			o:    allocatedA,
		},
		{
			name: "a new address: Normal IPAllocated",
			cur:  written(1, metav1.ConditionTrue, ReasonAllocated, "198.51.100.2 from pool a", "198.51.100.2"),
			o:    allocatedA,
			want: &event{reason: "IPAllocated", message: "Assigned " + msgA},
		},
		{
			name: "addresses written by someone else, no condition: Normal IPAllocated",
			cur:  corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}}},
			o:    allocatedA,
			want: &event{reason: "IPAllocated", message: "Assigned " + msgA},
		},
		{
			name: "first failure: Warning AllocationFailed with the reason",
			o:    failed(exhausted, allocator.Assignment{}),
			want: &event{warning: true, reason: "AllocationFailed", message: `PoolExhausted: pool "tiny" has no free IPv4 address`},
		},
		{
			name: "the same failure again: no event",
			cur:  written(1, metav1.ConditionFalse, "PoolExhausted", "whatever"),
			o:    failed(exhausted, allocator.Assignment{}),
		},
		{
			name: "another failure reason: Warning",
			cur:  written(1, metav1.ConditionFalse, "PoolExhausted", "whatever"),
			o:    failed(noPool, allocator.Assignment{}),
			want: &event{warning: true, reason: "AllocationFailed", message: `NoPool: pool "nope" does not exist`},
		},
		{
			name: "allocated, then failing while keeping the address: Warning",
			cur:  written(1, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			o:    failed(noPool, assignment("198.51.100.1", "a")),
			want: &event{warning: true, reason: "AllocationFailed", message: `NoPool: pool "nope" does not exist; the Service keeps 198.51.100.1`},
		},
		{
			name: "pending, then allocated: Normal",
			cur:  written(1, metav1.ConditionFalse, "PoolExhausted", "whatever"),
			o:    allocatedA,
			want: &event{reason: "IPAllocated", message: "Assigned " + msgA},
		},
		{
			name: "the address left its pool: Warning AddressesOutsidePool",
			cur:  written(1, metav1.ConditionTrue, ReasonAllocated, msgA, "198.51.100.1"),
			o:    outsideA,
			want: &event{warning: true, reason: ReasonOutsidePool, message: outsideA.message},
		},
		{
			name: "still outside: no event",
			cur:  written(1, metav1.ConditionTrue, ReasonOutsidePool, outsideA.message, "198.51.100.1"),
			o:    outsideA,
		},
		{
			name: "back in a pool: Normal IPAllocated",
			cur:  written(1, metav1.ConditionTrue, ReasonOutsidePool, outsideA.message, "198.51.100.1"),
			o:    allocatedA,
			want: &event{reason: "IPAllocated", message: "Assigned " + msgA},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok := transition(tt.cur, tt.o)
			if tt.want == nil {
				if ok {
					t.Errorf("event %+v, want none", ev)
				}
				return
			}
			if !ok {
				t.Fatalf("no event, want %+v", *tt.want)
			}
			if diff := cmp.Diff(*tt.want, ev, outcomeOpts); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

func addrs(ss ...string) []netip.Addr {
	ips := make([]netip.Addr, len(ss))
	for i, s := range ss {
		ips[i] = netip.MustParseAddr(s)
	}
	return ips
}
