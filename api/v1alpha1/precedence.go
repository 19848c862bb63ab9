package v1alpha1

import (
	"cmp"
	"strings"
)

// ComparePools orders IPPools by precedence, for slices.SortFunc: the older pool first, pools
// created in the same second by name. Where pools overlap, an address belongs to the first
// pool in this order that contains it: the controller gives it out from that pool only (a
// younger overlapping pool is disabled, so a new pool can never take over addresses in use)
// and the speaker announces it by that pool's advertisements. Both use this one function.
func ComparePools(a, b *IPPool) int {
	return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), strings.Compare(a.Name, b.Name))
}
