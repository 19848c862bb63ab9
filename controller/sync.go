package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// Reconciling: a worker takes a key from the queue (a Service, or the pool set) and syncs it;
// the decision is made under c.mu, the status written outside it.

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	var err error
	switch key {
	case poolsKey:
		c.mu.Lock()
		c.syncPoolSet()
		c.mu.Unlock()
		for _, svc := range c.allServices() {
			c.queue.Add(svc)
		}
		c.queue.Add(poolStatusKey)
	case poolStatusKey:
		err = c.writePoolStatuses(ctx)
	case reservedKey:
		c.mu.Lock()
		if c.syncReserved() {
			c.retryPending()
			c.queue.Add(poolStatusKey)
		}
		c.mu.Unlock()
	default:
		start := time.Now()
		err = c.syncService(ctx, key)
		c.metrics.reconcile.Observe(time.Since(start).Seconds())
		if err == nil {
			c.synced(key)
		}
	}
	if err != nil && ctx.Err() == nil {
		// A conflict only means the cache is behind our own last write: retry quietly.
		level := slog.LevelWarn
		if apierrors.IsConflict(err) {
			level = slog.LevelDebug
		}
		c.log.Log(ctx, level, "reconcile failed; retrying", "key", key, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *Controller) allServices() []string {
	svcs, _ := c.services.List(labels.Everything())
	keys := make([]string, len(svcs))
	for i, s := range svcs {
		keys[i] = s.Namespace + "/" + s.Name
	}
	return keys
}

func (c *Controller) namespaceLabels(ns string) map[string]string {
	n, err := c.namespaces.Get(ns)
	if err != nil {
		return nil
	}
	return n.Labels
}

// syncService brings one Service's allocation and status in line with its spec.
func (c *Controller) syncService(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		c.release(key)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	if !c.cfg.Class.Handles(svc) {
		// Clear what ironlb wrote (only if it held addresses or wrote its condition), then
		// release: no other Service is given the addresses while this one still shows them,
		// and a failed write is retried with the addresses still held.
		c.mu.Lock()
		as, held := c.alloc.Assignment(key)
		c.mu.Unlock()
		if next, changed := clearedStatus(svc.Status); changed && (held || hasOurCondition(svc)) {
			if err := c.updateStatus(ctx, svc, next); err != nil {
				return err
			}
		}
		c.mu.Lock()
		released := c.release(key)
		c.mu.Unlock()
		if released {
			c.recorder.Eventf(svc, corev1.EventTypeNormal, "IPReleased", "Released %s: the Service is no longer a LoadBalancer of class %s", joinAddrs(as.Addrs()), c.classDescription())
		}
		return nil
	}

	o := c.decide(key, svc)
	next, changed := applyOutcome(svc.Status, o, svc.Generation)
	if changed {
		if err := c.updateStatus(ctx, svc, next); err != nil {
			return err // what the status still shows stays draining
		}
	}
	c.mu.Lock()
	c.undrain(key)
	c.mu.Unlock()
	if !changed {
		return nil
	}
	if ev, ok := transition(svc.Status, o); ok {
		typ := corev1.EventTypeNormal
		if ev.warning {
			typ = corev1.EventTypeWarning
		}
		c.recorder.Event(svc, typ, ev.reason, ev.message)
		if o.status == metav1.ConditionTrue && !slices.Equal(config.IngressIPs(svc), o.ips) {
			c.metrics.allocations.Inc()
		}
		c.log.Info("service status", "service", key, "ips", joinAddrs(o.ips), "reason", o.reason, "message", o.message)
	}
	c.queue.AddAfter(poolStatusKey, c.cfg.PoolStatusDelay)
	return nil
}

// decide allocates for a Service of ours and returns the outcome to report. The addresses it
// frees drain until the caller has written the status (undrain).
func (c *Controller) decide(key string, svc *corev1.Service) outcome {
	req, err := config.RequestFor(svc, c.namespaceLabels(svc.Namespace))
	c.mu.Lock()
	defer c.mu.Unlock()
	held, _ := c.alloc.Assignment(key)
	// What this Service's status may still show: what it holds and what it drains. It may take
	// back what it drains; the rest keeps draining.
	shown := held.Addrs()
	for ip, k := range c.draining {
		if k == key {
			shown = append(shown, ip)
			delete(c.draining, ip)
		}
	}
	if len(shown) > len(held.IPs) {
		c.applyReserved()
	}
	var as allocator.Assignment
	if err == nil {
		as, err = c.alloc.Allocate(req)
	}
	if err != nil {
		// A failed Allocate changes nothing: the Service keeps what it held.
		o := failed(err, held)
		c.metrics.failures.WithLabelValues(o.reason).Inc()
		c.pending[key] = true
		c.drain(key, shown, held)
		return o
	}
	delete(c.pending, key)
	c.drain(key, shown, as)
	return allocated(as, c.retainedBy)
}

func (c *Controller) updateStatus(ctx context.Context, svc *corev1.Service, st corev1.ServiceStatus) error {
	cp := svc.DeepCopy()
	cp.Status = st
	if _, err := c.kube.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func hasOurCondition(svc *corev1.Service) bool {
	return slices.ContainsFunc(svc.Status.Conditions, func(c metav1.Condition) bool {
		return c.Type == v1alpha1.ServiceConditionIPAllocated
	})
}
