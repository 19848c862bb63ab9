package controller

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// nodeAddressesOnly trims a Node for the cache to its name and addresses.
func nodeAddressesOnly(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}

// syncReserved gives the allocator the reserved addresses from the caches; it reports whether
// they changed. The caller holds c.mu.
func (c *Controller) syncReserved() bool {
	nodes, _ := c.nodes.List(labels.Everything())
	var slicesIn []*discoveryv1.EndpointSlice
	for _, o := range c.apiSlices.GetStore().List() {
		slicesIn = append(slicesIn, o.(*discoveryv1.EndpointSlice))
	}
	next := config.ReservedAddresses(nodes, slicesIn)
	if maps.Equal(next, c.reserved) {
		return false
	}
	c.reserved = next
	c.applyReserved()
	c.log.Info("reserved addresses (nodes', API server's) updated", "count", len(next))
	return true
}

// reservedIn lists the reserved addresses in ranges, for a pool's status.
func reservedIn(reserved map[netip.Addr]string, ranges []allocator.Range) []string {
	var addrs []netip.Addr
	for ip := range reserved {
		if slices.ContainsFunc(ranges, func(r allocator.Range) bool { return r.Contains(ip) }) {
			addrs = append(addrs, ip)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	out := make([]string, len(addrs))
	for i, ip := range addrs {
		out[i] = fmt.Sprintf("%s (%s)", ip, reserved[ip])
	}
	return out
}

// describeReserved renders a pool's reserved addresses, at most ten.
func describeReserved(list []string) string {
	const max = 10
	if len(list) > max {
		list = append(slices.Clone(list[:max]), fmt.Sprintf("and %d more", len(list)-max))
	}
	return strings.Join(list, ", ") + ": never allocated"
}
