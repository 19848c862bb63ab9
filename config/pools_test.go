package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func ippool(name string, addrs []string, mutate func(*v1alpha1.IPPool)) *v1alpha1.IPPool {
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 4}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func ranges(ss ...string) []allocator.Range {
	rs := make([]allocator.Range, len(ss))
	for i, s := range ss {
		r, err := allocator.ParseRange(s)
		if err != nil {
			panic(err)
		}
		rs[i] = r
	}
	return rs
}

func mustSelector(s string) labels.Selector {
	sel, err := labels.Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

func TestCompilePool(t *testing.T) {
	tests := []struct {
		name string
		pool *v1alpha1.IPPool
		want allocator.Pool
	}{
		{
			name: "autoAssign unset means true; ranges in the order given, both families",
			pool: ippool("a", []string{"198.51.100.0/24", "2001:db8::10-2001:db8::1f"}, nil),
			want: allocator.Pool{Name: "a", AutoAssign: true, Ranges: ranges("198.51.100.0/24", "2001:db8::10-2001:db8::1f")},
		},
		{
			name: "autoAssign false",
			pool: ippool("a", []string{"198.51.100.0/24"}, func(p *v1alpha1.IPPool) { p.Spec.AutoAssign = ptr(false) }),
			want: allocator.Pool{Name: "a", Ranges: ranges("198.51.100.0/24")},
		},
		{
			name: "autoAssign true and avoidBuggyIPs",
			pool: ippool("a", []string{"198.51.100.0/24"}, func(p *v1alpha1.IPPool) {
				p.Spec.AutoAssign, p.Spec.AvoidBuggyIPs = ptr(true), true
			}),
			want: allocator.Pool{Name: "a", AutoAssign: true, AvoidBuggyIPs: true, Ranges: ranges("198.51.100.0/24")},
		},
		{
			name: "allocation: priority, namespaces and both selectors",
			pool: ippool("a", []string{"198.51.100.0/24"}, func(p *v1alpha1.IPPool) {
				p.Spec.Allocation = &v1alpha1.IPPoolAllocation{
					Priority:          10,
					Namespaces:        []string{"blue", "green"},
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}},
					ServiceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"gold", "silver"}},
					}},
				}
			}),
			want: allocator.Pool{
				Name: "a", AutoAssign: true, Ranges: ranges("198.51.100.0/24"),
				Priority: 10, Namespaces: []string{"blue", "green"},
				NamespaceSelector: mustSelector("team=blue"),
				ServiceSelector:   mustSelector("tier in (gold,silver)"),
			},
		},
		{
			name: "allocation with namespaces only: no selectors",
			pool: ippool("a", []string{"198.51.100.0/24"}, func(p *v1alpha1.IPPool) {
				p.Spec.Allocation = &v1alpha1.IPPoolAllocation{Namespaces: []string{"blue"}}
			}),
			want: allocator.Pool{Name: "a", AutoAssign: true, Ranges: ranges("198.51.100.0/24"), Namespaces: []string{"blue"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CompilePool(tt.pool)
			if err != nil {
				t.Fatalf("CompilePool: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("pool (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompilePoolErrors(t *testing.T) {
	tests := []struct {
		name    string
		pool    *v1alpha1.IPPool
		wantErr string
	}{
		{
			name:    "a malformed address: spec.addresses and the entry named",
			pool:    ippool("a", []string{"198.51.100.0/24", "198.51.100.999/32"}, nil),
			wantErr: `spec.addresses: invalid address range "198.51.100.999/32": netip.ParsePrefix("198.51.100.999/32"): ParseAddr("198.51.100.999"): IPv4 field has value >255`,
		},
		{
			name:    "host bits set",
			pool:    ippool("a", []string{"198.51.100.7/24"}, nil),
			wantErr: `spec.addresses: invalid address range "198.51.100.7/24": host bits are set (the block is 198.51.100.0/24)`,
		},
		{
			name:    "entries that overlap each other",
			pool:    ippool("a", []string{"198.51.100.0/24", "198.51.100.10-198.51.100.20"}, nil),
			wantErr: `spec.addresses: invalid address range "198.51.100.10-198.51.100.20": overlaps "198.51.100.0/24"`,
		},
		{
			name: "a namespace selector with an unknown operator",
			pool: ippool("a", []string{"198.51.100.0/24"}, func(p *v1alpha1.IPPool) {
				p.Spec.Allocation = &v1alpha1.IPPoolAllocation{NamespaceSelector: &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Near"}},
				}}
			}),
			wantErr: `spec.allocation.namespaceSelector: "Near" is not a valid label selector operator`,
		},
		{
			name: "a service selector with a bad label value",
			pool: ippool("a", []string{"198.51.100.0/24"}, func(p *v1alpha1.IPPool) {
				p.Spec.Allocation = &v1alpha1.IPPoolAllocation{ServiceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"tier": "not valid!"},
				}}
			}),
			wantErr: "spec.allocation.serviceSelector: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompilePool(tt.pool)
			if err == nil {
				t.Fatalf("CompilePool succeeded, want %q", tt.wantErr)
			}
			if strings.HasSuffix(tt.wantErr, ": ") {
				// The selector library's wording is its own: only the field is ours.
				if !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Errorf("error %q, want it to start with %q", err, tt.wantErr)
				}
				return
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error %q, want %q", err, tt.wantErr)
			}
		})
	}
	var pe *allocator.ParseError
	if _, err := CompilePool(ippool("a", []string{"nonsense"}, nil)); !errors.As(err, &pe) || pe.Input != "nonsense" {
		t.Errorf("error %v, want an *allocator.ParseError for \"nonsense\"", err)
	}
}
