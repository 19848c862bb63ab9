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

// drain keeps the addresses of shown that key no longer holds and no one else holds from
// other Services until key's status is written. The caller holds c.mu.
func (c *Controller) drain(key string, shown []netip.Addr, now allocator.Assignment) {
	added := false
	for _, ip := range shown {
		if !slices.Contains(now.Addrs(), ip) && len(c.alloc.Holders(ip)) == 0 {
			c.draining[ip], added = key, true
		}
	}
	if added {
		c.applyReserved()
	}
}

// undrain frees what key drained (its status no longer shows it) and lets the Services
// waiting for an address retry. The caller holds c.mu.
func (c *Controller) undrain(key string) {
	n := len(c.draining)
	maps.DeleteFunc(c.draining, func(_ netip.Addr, k string) bool { return k == key })
	if len(c.draining) != n {
		c.applyReserved()
		c.retryPending()
	}
}

// applyReserved gives the allocator the reserved and the draining addresses. The caller holds
// c.mu.
func (c *Controller) applyReserved() {
	all := maps.Clone(c.reserved)
	if all == nil {
		all = map[netip.Addr]string{}
	}
	for ip, key := range c.draining {
		if _, ok := all[ip]; !ok {
			all[ip] = "Service " + key + " still shows it while its status is written"
		}
	}
	c.alloc.SetReserved(all)
}

// release frees what a Service held and lets the Services waiting for an address retry. The
// caller holds c.mu.
func (c *Controller) release(key string) bool {
	delete(c.pending, key)
	c.undrain(key)
	if !c.alloc.Release(key) {
		return false
	}
	c.log.Info("released", "service", key)
	c.retryPending()
	c.queue.AddAfter(poolStatusKey, c.cfg.PoolStatusDelay)
	return true
}

// retryPending queues the Services that failed to allocate: an address was freed.
func (c *Controller) retryPending() {
	for k := range c.pending {
		c.queue.Add(k)
	}
}
