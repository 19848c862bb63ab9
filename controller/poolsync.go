package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
)

// listPools returns the IPPools in the cache, in precedence order (oldest first).
func (c *Controller) listPools() []*v1alpha1.IPPool {
	var pools []*v1alpha1.IPPool
	for _, o := range c.poolInf.GetStore().List() {
		pools = append(pools, o.(*v1alpha1.IPPool))
	}
	slices.SortFunc(pools, v1alpha1.ComparePools)
	return pools
}

// syncPoolSet compiles the IPPools into the allocator. A pool being deleted takes no new
// allocations; what Services hold in it is kept and shows as outside every pool. The caller
// holds c.mu.
func (c *Controller) syncPoolSet() {
	pools := c.listPools()
	views := make(map[string]poolView, len(pools))
	var compiled []allocator.Pool
	for _, p := range pools {
		v := poolView{deleting: p.DeletionTimestamp != nil}
		if v.deleting {
			v.ranges, _ = allocator.ParseAddresses(p.Spec.Addresses)
		} else {
			cp, err := config.CompilePool(p)
			if err != nil {
				v.invalid = err
			} else {
				compiled = append(compiled, cp)
			}
		}
		views[p.Name] = v
	}
	rep := c.alloc.SetPools(compiled)
	for _, inv := range rep.Invalid {
		v := views[inv.Pool]
		v.invalid = inv.Err
		views[inv.Pool] = v
	}
	for _, o := range rep.Overlaps {
		v := views[o.Pool]
		v.overlap = append(v.overlap, o)
		views[o.Pool] = v
	}
	c.views = views
	if c.retained == nil {
		// Leading starts: the pools' statuses say where the addresses outside them came from.
		c.retained = map[netip.Addr]string{}
		for _, p := range pools {
			for _, a := range p.Status.RetainedAddresses {
				if ip, err := netip.ParseAddr(a); err == nil && c.retained[ip] == "" {
					c.retained[ip] = p.Name
				}
			}
		}
	}
	c.log.Info("pool set compiled", "pools", len(pools), "usable", len(compiled)-len(rep.Disabled()), "overlaps", len(rep.Overlaps), "outside", len(rep.Outside))
}

// writePoolStatuses brings every IPPool's status, finalizer and metrics in line with the
// allocator, and emits events on the transitions an operator must hear of.
func (c *Controller) writePoolStatuses(ctx context.Context) error {
	c.mu.Lock()
	views := c.views // replaced by syncPoolSet, never changed in place
	all := c.alloc.Outside()
	retained := make(map[netip.Addr]string, len(all))
	for i, o := range all {
		if all[i].Pool = c.retainedBy(o.Addr); all[i].Pool != "" {
			retained[o.Addr] = all[i].Pool
		}
	}
	c.retained = retained
	outside := outsideByPool(all, views)
	stats := map[string][]allocator.PoolStats{}
	for _, s := range c.alloc.Stats() {
		stats[s.Pool] = append(stats[s.Pool], s)
	}
	reserved := c.reserved // replaced by syncReserved, never changed in place
	c.mu.Unlock()
	c.metrics.poolAddresses.Reset()
	var errs []error
	for _, p := range c.listPools() {
		v := views[p.Name]
		v.outside, v.stats = outside[p.Name], stats[p.Name]
		if ranges, err := allocator.ParseAddresses(p.Spec.Addresses); err == nil {
			v.reserved = reservedIn(reserved, ranges)
		}
		for _, s := range v.stats {
			fam := s.Family.String()
			c.metrics.poolAddresses.WithLabelValues(p.Name, fam, "total").Set(s.Total.Float64())
			c.metrics.poolAddresses.WithLabelValues(p.Name, fam, "assigned").Set(s.Assigned.Float64())
			c.metrics.poolAddresses.WithLabelValues(p.Name, fam, "available").Set(s.Available.Float64())
		}
		if err := c.syncPoolObject(ctx, p, v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// retainedBy returns the pool a held address in no pool came from: the allocator's last pool,
// else what the pools' statuses said at start; "" when none.
func (c *Controller) retainedBy(addr netip.Addr) string {
	if p := c.alloc.LastPool(addr); p != "" {
		return p
	}
	return c.retained[addr]
}

// outsideByPool groups the held addresses that are in no pool by the pool they were last in.
// A pool being deleted also claims those in its ranges: after a restart the allocator does
// not know where a restored address came from (Outside.Pool is ""), and the finalizer must
// stay while a Service holds one of the pool's addresses.
func outsideByPool(all []allocator.Outside, views map[string]poolView) map[string][]allocator.Outside {
	outside := map[string][]allocator.Outside{}
	for _, o := range all {
		outside[o.Pool] = append(outside[o.Pool], o)
	}
	for name, v := range views {
		if !v.deleting {
			continue
		}
		outside[name] = nil
		for _, o := range all {
			if o.Pool == name || slices.ContainsFunc(v.ranges, func(r allocator.Range) bool { return r.Contains(o.Addr) }) {
				outside[name] = append(outside[name], o)
			}
		}
	}
	return outside
}

func (c *Controller) syncPoolObject(ctx context.Context, p *v1alpha1.IPPool, v poolView) error {
	// The finalizer: on every live pool; removed from a deleted one once nothing is held in it.
	hasFinalizer := slices.Contains(p.Finalizers, PoolFinalizer)
	switch {
	case !v.deleting && !hasFinalizer:
		cp := p.DeepCopy()
		cp.Finalizers = append(cp.Finalizers, PoolFinalizer)
		return c.putPool(ctx, cp, "")
	case v.deleting && hasFinalizer && len(v.outside) == 0:
		cp := p.DeepCopy()
		cp.Finalizers = slices.DeleteFunc(cp.Finalizers, func(f string) bool { return f == PoolFinalizer })
		c.log.Info("pool deleted: no Service holds its addresses", "pool", p.Name)
		return c.putPool(ctx, cp, "")
	}

	next := desiredPoolStatus(p, v)
	if poolStatusEqual(p.Status, next) {
		return nil
	}
	cp := p.DeepCopy()
	cp.Status = next
	if err := c.putPool(ctx, cp, "status"); err != nil {
		return err // no event: the retry compares with the same old status
	}
	for _, typ := range []string{v1alpha1.IPPoolOverlap, v1alpha1.IPPoolAddressesInUse, v1alpha1.IPPoolAddressesReserved} {
		if meta.IsStatusConditionTrue(next.Conditions, typ) && !meta.IsStatusConditionTrue(p.Status.Conditions, typ) {
			cond := meta.FindStatusCondition(next.Conditions, typ)
			c.recorder.Event(p, corev1.EventTypeWarning, typ, cond.Message)
		}
	}
	if v.deleting && len(v.outside) > 0 && !meta.IsStatusConditionPresentAndEqual(p.Status.Conditions, v1alpha1.IPPoolReady, "False") {
		c.recorder.Event(p, corev1.EventTypeWarning, "DeletionBlocked", meta.FindStatusCondition(next.Conditions, v1alpha1.IPPoolReady).Message)
	}
	return nil
}

// putPool updates an IPPool (subresource "" or "status"). A conflict means the cache is behind:
// the informer brings the new version and the key is retried.
func (c *Controller) putPool(ctx context.Context, p *v1alpha1.IPPool, subresource string) error {
	req := c.crd.Put().Resource("ippools").Name(p.Name).Body(p)
	if subresource != "" {
		req = req.SubResource(subresource)
	}
	if err := req.Do(ctx).Error(); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating IPPool %s %s: %w", p.Name, subresource, err)
	}
	return nil
}
