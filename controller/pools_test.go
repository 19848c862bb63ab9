package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ippool is an IPPool "p" at generation 4 with addrs.
func ippool(addrs ...string) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 4}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
}

func prefixRange(s string) allocator.Range { return allocator.PrefixRange(netip.MustParsePrefix(s)) }

// poolStats returns the allocator's figures for a pool "p" with addrs, after allocating
// allocated addresses (each to its own Service).
func poolStats(t *testing.T, addrs []string, allocated ...string) []allocator.PoolStats {
	t.Helper()
	p, err := config.CompilePool(ippool(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	a := allocator.New()
	if rep := a.SetPools([]allocator.Pool{p}); len(rep.Invalid)+len(rep.Overlaps) > 0 {
		t.Fatalf("SetPools: %+v", rep)
	}
	for i, ip := range allocated {
		req := allocator.Request{Service: fmt.Sprintf("ns/s%d", i), Namespace: "ns", IPs: []netip.Addr{netip.MustParseAddr(ip)}}
		if _, err := a.Allocate(req); err != nil {
			t.Fatal(err)
		}
	}
	return a.Stats()
}

// cond is a pool condition as desiredPoolStatus writes it (generation 4).
func cond(typ string, ok bool, reason, message string) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: 4}
}

var (
	readyValid = cond(v1alpha1.IPPoolReady, true, "Valid", "addresses can be allocated")
	noOverlap  = cond(v1alpha1.IPPoolOverlap, false, "NoOverlap", "no other pool shares an address")
	noneInUse  = cond(v1alpha1.IPPoolAddressesInUse, false, "NoAddressesOutside", "every held address is in the pool")
)

func outsideAddrs(n int) []allocator.Outside {
	out := make([]allocator.Outside, n)
	for i := range out {
		out[i] = allocator.Outside{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), Pool: "p", Services: []string{fmt.Sprintf("ns/s%d", i+1)}}
	}
	return out
}

func TestDesiredPoolStatus(t *testing.T) {
	twoHolders := []allocator.Outside{{Addr: netip.MustParseAddr("198.51.100.9"), Pool: "p", Services: []string{"ns/a", "ns/b"}}}
	overlaps := []allocator.Overlap{
		{Pool: "p", With: "older", Range: prefixRange("198.51.100.0/30")},
		{Pool: "p", With: "oldest", Range: prefixRange("198.51.100.8/32")},
	}
	foreign := metav1.Condition{Type: "example.com/Audited", Status: metav1.ConditionTrue, Reason: "Done", Message: "theirs", ObservedGeneration: 1}
	tests := []struct {
		name string
		pool *v1alpha1.IPPool
		view poolView
		want v1alpha1.IPPoolStatus
	}{
		{
			name: "a valid IPv4 pool: counts, Ready, no overlap, nothing outside",
			pool: ippool("198.51.100.0/30"),
			view: poolView{stats: poolStats(t, []string{"198.51.100.0/30"}, "198.51.100.1")},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				IPv4:               &v1alpha1.IPPoolAddressCounts{Total: "4", Assigned: "1", Available: "3"},
				Conditions:         []metav1.Condition{readyValid, noOverlap, noneInUse},
			},
		},
		{
			name: "an IPv6 /64 counts exactly, beyond 64 bits, beside IPv4",
			pool: ippool("198.51.100.0/24", "2001:db8::/64"),
			view: poolView{stats: poolStats(t, []string{"198.51.100.0/24", "2001:db8::/64"}, "2001:db8::1", "2001:db8::2")},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				IPv4:               &v1alpha1.IPPoolAddressCounts{Total: "256", Assigned: "0", Available: "256"},
				IPv6:               &v1alpha1.IPPoolAddressCounts{Total: "18446744073709551616", Assigned: "2", Available: "18446744073709551614"},
				Conditions:         []metav1.Condition{readyValid, noOverlap, noneInUse},
			},
		},
		{
			name: "invalid addresses: not Ready, with the compile error",
			pool: ippool("198.51.100.7/24"),
			view: poolView{invalid: errors.New(`spec.addresses: invalid address range "198.51.100.7/24": host bits are set`)},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				Conditions: []metav1.Condition{
					cond(v1alpha1.IPPoolReady, false, "InvalidAddresses", `spec.addresses: invalid address range "198.51.100.7/24": host bits are set`),
					noOverlap, noneInUse,
				},
			},
		},
		{
			name: "overlapping older pools: not Ready, Overlap names each range and the older pool",
			pool: ippool("198.51.100.0/28"),
			view: poolView{overlap: overlaps},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				Conditions: []metav1.Condition{
					cond(v1alpha1.IPPoolReady, false, "Overlap", "not used for allocation while it overlaps another pool"),
					cond(v1alpha1.IPPoolOverlap, true, "Overlap", "overlaps pool older on 198.51.100.0/30; overlaps pool oldest on 198.51.100.8; pool older is older and keeps the addresses"),
					noneInUse,
				},
			},
		},
		{
			name: "deleting, nothing held: not Ready, Deleting",
			pool: ippool("198.51.100.0/28"),
			view: poolView{deleting: true},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				Conditions: []metav1.Condition{
					cond(v1alpha1.IPPoolReady, false, "Deleting", "the pool is being deleted"),
					noOverlap, noneInUse,
				},
			},
		},
		{
			name: "deleting while held: Ready says who holds what; AddressesInUse stays False",
			pool: ippool("198.51.100.0/28"),
			view: poolView{deleting: true, outside: twoHolders},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				Conditions: []metav1.Condition{
					cond(v1alpha1.IPPoolReady, false, "Deleting", "deletion waits until no Service holds an address of the pool: 198.51.100.9 (ns/a, ns/b)"),
					noOverlap, noneInUse,
				},
			},
		},
		{
			name: "shrunk under held addresses: Ready, AddressesInUse lists addresses and holders",
			pool: ippool("198.51.100.0/29"),
			view: poolView{stats: poolStats(t, []string{"198.51.100.0/29"}), outside: twoHolders},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				IPv4:               &v1alpha1.IPPoolAddressCounts{Total: "8", Assigned: "0", Available: "8"},
				RetainedAddresses:  []string{"198.51.100.9"},
				Conditions: []metav1.Condition{
					readyValid, noOverlap,
					cond(v1alpha1.IPPoolAddressesInUse, true, "AddressesInUse", "addresses removed from the pool are still held: 198.51.100.9 (ns/a, ns/b)"),
				},
			},
		},
		{
			name: "many addresses outside: the list stops at ten and counts the rest",
			pool: ippool("203.0.113.0/29"),
			view: poolView{outside: outsideAddrs(13)},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				RetainedAddresses: []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6",
					"198.51.100.7", "198.51.100.8", "198.51.100.9", "198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.13"},
				Conditions: []metav1.Condition{
					readyValid, noOverlap,
					cond(v1alpha1.IPPoolAddressesInUse, true, "AddressesInUse", "addresses removed from the pool are still held: "+
						"198.51.100.1 (ns/s1), 198.51.100.2 (ns/s2), 198.51.100.3 (ns/s3), 198.51.100.4 (ns/s4), 198.51.100.5 (ns/s5), "+
						"198.51.100.6 (ns/s6), 198.51.100.7 (ns/s7), 198.51.100.8 (ns/s8), 198.51.100.9 (ns/s9), 198.51.100.10 (ns/s10), and 3 more"),
				},
			},
		},
		{
			name: "conditions of others are kept; stale counts of a family the pool lost go",
			pool: func() *v1alpha1.IPPool {
				p := ippool("2001:db8::/120")
				p.Status = v1alpha1.IPPoolStatus{
					ObservedGeneration: 3,
					IPv4:               &v1alpha1.IPPoolAddressCounts{Total: "4", Assigned: "0", Available: "4"},
					Conditions:         []metav1.Condition{foreign},
				}
				return p
			}(),
			view: poolView{stats: poolStats(t, []string{"2001:db8::/120"})},
			want: v1alpha1.IPPoolStatus{
				ObservedGeneration: 4,
				IPv6:               &v1alpha1.IPPoolAddressCounts{Total: "256", Assigned: "0", Available: "256"},
				Conditions:         []metav1.Condition{foreign, readyValid, noOverlap, noneInUse},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pool.DeepCopy()
			got := desiredPoolStatus(tt.pool, tt.view)
			if diff := cmp.Diff(tt.want, got, statusOpts); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tt.pool); diff != "" {
				t.Errorf("the pool was modified (-before +after):\n%s", diff)
			}
		})
	}
}

func TestDesiredPoolStatusKeepsTransitionTimes(t *testing.T) {
	p := ippool("198.51.100.0/30")
	p.Status = desiredPoolStatus(p, poolView{})
	for i := range p.Status.Conditions {
		p.Status.Conditions[i].LastTransitionTime = then
	}
	next := desiredPoolStatus(p, poolView{})
	if !poolStatusEqual(p.Status, next) {
		t.Errorf("the same view gives another status:\n%+v\n%+v", p.Status, next)
	}
	for _, c := range next.Conditions {
		if !c.LastTransitionTime.Equal(&then) {
			t.Errorf("condition %s: transition time %v, want %v kept", c.Type, c.LastTransitionTime, then)
		}
	}
}

func TestPoolStatusEqual(t *testing.T) {
	base := func() v1alpha1.IPPoolStatus {
		return v1alpha1.IPPoolStatus{
			ObservedGeneration: 4,
			IPv4:               &v1alpha1.IPPoolAddressCounts{Total: "4", Assigned: "1", Available: "3"},
			Conditions:         []metav1.Condition{readyValid, noOverlap, noneInUse},
		}
	}
	tests := []struct {
		name   string
		change func(*v1alpha1.IPPoolStatus)
		equal  bool
	}{
		{"identical: equal", func(*v1alpha1.IPPoolStatus) {}, true},
		{"only a transition time differs: equal", func(s *v1alpha1.IPPoolStatus) { s.Conditions[1].LastTransitionTime = then }, true},
		{"another generation: different", func(s *v1alpha1.IPPoolStatus) { s.ObservedGeneration = 5 }, false},
		{"another count: different", func(s *v1alpha1.IPPoolStatus) { s.IPv4.Assigned = "2" }, false},
		{"counts of a family gone: different", func(s *v1alpha1.IPPoolStatus) { s.IPv4 = nil }, false},
		{"counts of a new family: different", func(s *v1alpha1.IPPoolStatus) {
			s.IPv6 = &v1alpha1.IPPoolAddressCounts{Total: "1", Assigned: "0", Available: "1"}
		}, false},
		{"a condition's message: different", func(s *v1alpha1.IPPoolStatus) { s.Conditions[0].Message = "other" }, false},
		{"a condition's status: different", func(s *v1alpha1.IPPoolStatus) { s.Conditions[2].Status = metav1.ConditionTrue }, false},
		{"a condition less: different", func(s *v1alpha1.IPPoolStatus) { s.Conditions = s.Conditions[:2] }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.change(&b)
			if got := poolStatusEqual(a, b); got != tt.equal {
				t.Errorf("poolStatusEqual = %v, want %v", got, tt.equal)
			}
		})
	}
}

func TestOutsideByPool(t *testing.T) {
	out := func(ip, pool string, svcs ...string) allocator.Outside {
		return allocator.Outside{Addr: netip.MustParseAddr(ip), Pool: pool, Services: svcs}
	}
	all := []allocator.Outside{
		out("198.51.100.1", "", "ns/restored"),    // restored after a restart: its pool unknown
		out("198.51.100.2", "dying", "ns/before"), // the allocator saw it leave "dying"
		out("198.51.100.3", "shrunk", "ns/kept"),
		out("203.0.113.1", "", "ns/elsewhere"),
	}
	views := map[string]poolView{
		"dying":  {deleting: true, ranges: []allocator.Range{prefixRange("198.51.100.0/30")}},
		"shrunk": {},
		"gone":   {deleting: true, ranges: []allocator.Range{prefixRange("192.0.2.0/24")}},
	}
	want := map[string][]allocator.Outside{
		// A dying pool claims what lies in its ranges, whatever the allocator remembers.
		"dying":  {all[0], all[1], all[2]},
		"shrunk": {all[2]},
		"":       {all[0], all[3]},
		"gone":   nil,
	}
	if diff := cmp.Diff(want, outsideByPool(all, views), addrOpts); diff != "" {
		t.Errorf("outside addresses by pool (-want +got):\n%s", diff)
	}
}
