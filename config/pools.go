package config

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// CompilePool turns an IPPool into the allocator's Pool. Admission already rejected what CEL
// can express; an error here names what it could not (or what an old object still carries).
func CompilePool(p *v1alpha1.IPPool) (allocator.Pool, error) {
	ranges, err := allocator.ParseAddresses(p.Spec.Addresses)
	if err != nil {
		return allocator.Pool{}, fmt.Errorf("spec.addresses: %w", err)
	}
	out := allocator.Pool{
		Name:          p.Name,
		Ranges:        ranges,
		AutoAssign:    p.Spec.AutoAssign == nil || *p.Spec.AutoAssign,
		AvoidBuggyIPs: p.Spec.AvoidBuggyIPs,
	}
	if a := p.Spec.Allocation; a != nil {
		out.Priority = int(a.Priority)
		out.Namespaces = a.Namespaces
		if out.NamespaceSelector, err = selector(a.NamespaceSelector); err != nil {
			return allocator.Pool{}, fmt.Errorf("spec.allocation.namespaceSelector: %w", err)
		}
		if out.ServiceSelector, err = selector(a.ServiceSelector); err != nil {
			return allocator.Pool{}, fmt.Errorf("spec.allocation.serviceSelector: %w", err)
		}
	}
	return out, nil
}

func selector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return nil, nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// Pool is an IPPool as the speakers read it: which addresses it holds, for the advertisements
// that select it by name or label.
type Pool struct {
	Name     string
	Labels   labels.Set
	Ranges   []allocator.Range
	Retained map[netip.Addr]bool // held outside Ranges since the pool shrank (status.retainedAddresses)
}

// Pools are the IPPools whose addresses parse, in precedence order (v1alpha1.ComparePools,
// the order in which the controller gives an address to the pool that keeps it).
type Pools []Pool

// CompilePools returns the pools whose addresses parse, in precedence order. A pool that does
// not parse is left out: the controller reports it on the pool.
func CompilePools(in []*v1alpha1.IPPool) Pools {
	in = slices.Clone(in)
	slices.SortFunc(in, v1alpha1.ComparePools)
	out := make(Pools, 0, len(in))
	for _, p := range in {
		ranges, err := allocator.ParseAddresses(p.Spec.Addresses)
		if err != nil {
			continue
		}
		c := Pool{Name: p.Name, Labels: p.Labels, Ranges: ranges}
		for _, a := range p.Status.RetainedAddresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				if c.Retained == nil {
					c.Retained = map[netip.Addr]bool{}
				}
				c.Retained[ip] = true
			}
		}
		out = append(out, c)
	}
	return out
}

// Of returns the pool ip belongs to: the first in precedence order that contains it, else the
// first that retains it (the controller lists there an address a Service kept when the pool
// shrank), else nil: an address in no pool is not announced.
func (ps Pools) Of(ip netip.Addr) *Pool {
	for i := range ps {
		for _, r := range ps[i].Ranges {
			if r.Contains(ip) {
				return &ps[i]
			}
		}
	}
	for i := range ps {
		if ps[i].Retained[ip] {
			return &ps[i]
		}
	}
	return nil
}
