package allocator

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Pool is an address pool as the allocator sees it, compiled from an IPPool.
type Pool struct {
	Name   string
	Ranges []Range // disjoint; IPv4 and IPv6 may mix (see ParseAddresses)

	// AutoAssign lets the allocator draw from the pool for Services that
	// name neither a pool nor an address. The zero value is false; the
	// IPPool default (true) is applied by whoever compiles the IPPool.
	AutoAssign bool
	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255, in every
	// range of the pool (also within a range that crosses a /24).
	AvoidBuggyIPs bool

	// Restrictions. A pool with any of Namespaces, NamespaceSelector or
	// ServiceSelector is restricted: only Services whose namespace is listed
	// in Namespaces or matches NamespaceSelector (either, when both are set),
	// and whose labels match ServiceSelector (when set), may draw from it,
	// however they ask (automatically, by pool name or by address). A nil
	// selector does not restrict.
	Namespaces        []string
	NamespaceSelector labels.Selector // matched against Request.NamespaceLabels
	ServiceSelector   labels.Selector // matched against Request.ServiceLabels
	// Priority orders restricted pools for automatic allocation: lower
	// first, then by name. It does not order unrestricted pools.
	Priority int
}

// Restricted reports whether p limits which Services may draw from it.
func (p *Pool) Restricted() bool {
	return len(p.Namespaces) > 0 || p.NamespaceSelector != nil || p.ServiceSelector != nil
}

// Validate reports why p cannot be used: an empty name, an invalid range or
// two ranges that overlap.
func (p *Pool) Validate() error {
	if p.Name == "" {
		return errors.New("pool has no name")
	}
	for _, r := range p.Ranges {
		if err := r.check(); err != nil {
			return fmt.Errorf("pool %q: invalid range: %w", p.Name, err)
		}
	}
	if i, j, ok := firstOverlapWithin(p.Ranges); ok {
		return fmt.Errorf("pool %q: ranges %s and %s overlap", p.Name, p.Ranges[i], p.Ranges[j])
	}
	return nil
}

// pool is a validated Pool with its state.
type pool struct {
	Pool
	enabled bool // false when the pool overlaps one of higher precedence
	overlap string
	fams    [2]poolFamily // indexed by Family.index()
}

// poolFamily is one family of a pool.
type poolFamily struct {
	ranges   []Range // sorted
	total    Count   // addresses in ranges
	assigned uint64  // held addresses attributed to the pool
	free     *space  // nil when the pool is disabled or has no such range
}

// compilePool copies p (which must be valid) so that the caller's slices
// may change, and sorts its ranges by family.
func compilePool(p Pool) *pool {
	cp := &pool{Pool: p, enabled: true}
	cp.Ranges = slices.Clone(p.Ranges)
	cp.Namespaces = slices.Clone(p.Namespaces)
	for _, r := range cp.Ranges {
		pf := &cp.fams[r.Family().index()]
		pf.ranges = append(pf.ranges, r)
		pf.total = pf.total.Add(r.Size())
	}
	for i := range cp.fams {
		slices.SortFunc(cp.fams[i].ranges, compareRanges)
	}
	return cp
}

// fam returns the state of family f.
func (p *pool) fam(f Family) *poolFamily { return &p.fams[f.index()] }

// has reports whether p has addresses of family f.
func (p *pool) has(f Family) bool { return len(p.fam(f).ranges) > 0 }

// contains reports whether a is in one of p's ranges.
func (p *pool) contains(a netip.Addr) bool {
	rs := p.fam(FamilyOf(a)).ranges
	i, _ := slices.BinarySearchFunc(rs, a, func(r Range, a netip.Addr) int {
		return r.To.Compare(a)
	})
	return i < len(rs) && rs[i].Contains(a)
}

// allocatable reports whether the allocator may hand out a from p (it does
// not look at who holds a).
func (p *pool) allocatable(a netip.Addr) bool {
	return p.enabled && !(p.AvoidBuggyIPs && isBuggy(a))
}

// admits reports whether the Service described by w may draw from p.
func (p *pool) admits(w *want) bool {
	return p.admitsNamespace(w) && (p.ServiceSelector == nil || p.ServiceSelector.Matches(labels.Set(w.svcLabels)))
}

// admitsNamespace reports whether w's namespace is listed or selected; any namespace is when
// the pool neither lists nor selects namespaces. Listed or selected, as MetalLB's
// serviceAllocation (whose namespaces and namespaceSelectors migrate to these fields) unions
// the two.
func (p *pool) admitsNamespace(w *want) bool {
	if len(p.Namespaces) == 0 && p.NamespaceSelector == nil {
		return true
	}
	return slices.Contains(p.Namespaces, w.namespace) ||
		(p.NamespaceSelector != nil && p.NamespaceSelector.Matches(labels.Set(w.nsLabels)))
}

// refusal explains why p does not admit w, for error messages.
func (p *pool) refusal(w *want) string {
	var why []string
	if !p.admitsNamespace(w) {
		switch {
		case p.NamespaceSelector == nil:
			why = append(why, fmt.Sprintf("namespace %q is not one of %q", w.namespace, p.Namespaces))
		case len(p.Namespaces) == 0:
			why = append(why, fmt.Sprintf("the namespace's labels do not match %q", p.NamespaceSelector))
		default:
			why = append(why, fmt.Sprintf("namespace %q is not one of %q and its labels do not match %q", w.namespace, p.Namespaces, p.NamespaceSelector))
		}
	}
	if p.ServiceSelector != nil && !p.ServiceSelector.Matches(labels.Set(w.svcLabels)) {
		why = append(why, fmt.Sprintf("the service's labels do not match %q", p.ServiceSelector))
	}
	return strings.Join(why, "; ")
}

// autoOrder is the order in which pools are tried for automatic allocation:
// restricted pools by priority then name, then unrestricted ones by name.
func autoOrder(a, b *pool) int {
	ra, rb := a.Restricted(), b.Restricted()
	switch {
	case ra && !rb:
		return -1
	case !ra && rb:
		return 1
	case ra:
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.Name, b.Name))
	}
	return strings.Compare(a.Name, b.Name)
}

// firstOverlap returns the lowest range that p and q have in common.
func firstOverlap(p, q *pool) (Range, bool) {
	for f := range p.fams {
		a, b := p.fams[f].ranges, q.fams[f].ranges
		for i, j := 0, 0; i < len(a) && j < len(b); {
			if a[i].Overlaps(b[j]) {
				from, to := a[i].From, a[i].To
				if b[j].From.Compare(from) > 0 {
					from = b[j].From
				}
				if b[j].To.Compare(to) < 0 {
					to = b[j].To
				}
				return Range{From: from, To: to}, true
			}
			if a[i].To.Less(b[j].To) {
				i++
			} else {
				j++
			}
		}
	}
	return Range{}, false
}
