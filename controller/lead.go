package controller

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lead runs while this replica is the leader: restore, then reconcile until ctx ends.
func (c *Controller) lead(ctx context.Context) {
	c.metrics.leader.Set(1)
	start := time.Now()
	c.leadStart = start // before the workers start
	restored, err := c.restore(ctx)
	if err != nil {
		c.log.Info("stopped before the allocator was restored", "err", err)
		return
	}
	c.log.Info("leading: allocator restored from Service status", "services", restored, "elapsed", time.Since(start).Round(time.Millisecond))
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	c.mu.Lock()
	none := len(c.unsynced) == 0
	c.mu.Unlock()
	if none {
		c.initialSyncDone()
	}
	var wg sync.WaitGroup
	for range max(c.cfg.Workers, 1) {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	wg.Wait()
	c.log.Info("workers stopped")
}

// restore rebuilds the allocator from the cluster as it is: the pool set, then every Service's
// current addresses exactly, oldest Service first (so on a conflict the older keeps its IP).
// A restart never changes an IP.
//
// The Services come from a fresh list from the API server, not from the informer's cache: a
// hot standby that just won the Lease may not have seen the previous leader's last writes yet,
// and an address missing from the allocator would be given to another Service. A failing
// list is retried until it succeeds or ctx ends (leadership lost).
func (c *Controller) restore(ctx context.Context) (int, error) {
	svcs, err := c.listServices(ctx)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.syncPoolSet()
	c.syncReserved()
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return compareKeys(a, b)
	})
	n := 0
	c.unsynced = make(map[string]bool, len(svcs))
	for _, svc := range svcs {
		c.queue.Add(svc.Namespace + "/" + svc.Name)
		c.unsynced[svc.Namespace+"/"+svc.Name] = true
		ips := config.IngressIPs(svc)
		if !c.cfg.Class.Handles(svc) || len(ips) == 0 {
			continue
		}
		// On a malformed request RequestFor still fills in what it could read, the sharing key
		// and ports included, so that the Services sharing an address with this one keep it;
		// the reconcile reports the error.
		req, _ := config.RequestFor(svc, c.namespaceLabels(svc.Namespace))
		if _, err := c.alloc.Restore(req, ips); err != nil {
			c.log.Warn("cannot restore a Service's addresses; it will be reconciled", "service", req.Service, "ips", joinAddrs(ips), "err", err)
			continue
		}
		n++
	}
	c.queue.Add(poolStatusKey)
	return n, nil
}

// listServices lists every Service from the API server (a quorum read), retrying until it
// succeeds or ctx ends.
func (c *Controller) listServices(ctx context.Context) ([]*corev1.Service, error) {
	backoff := 100 * time.Millisecond
	for {
		list, err := c.kube.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err == nil {
			svcs := make([]*corev1.Service, len(list.Items))
			for i := range list.Items {
				svcs[i] = &list.Items[i]
			}
			return svcs, nil
		}
		c.log.Warn("listing Services to restore the allocator; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func compareKeys(a, b *corev1.Service) int {
	if a.Namespace != b.Namespace {
		if a.Namespace < b.Namespace {
			return -1
		}
		return 1
	}
	if a.Name < b.Name {
		return -1
	}
	if a.Name > b.Name {
		return 1
	}
	return 0
}

// synced records that a Service restore queued was reconciled; the last one ends the initial
// sync.
func (c *Controller) synced(key string) {
	c.mu.Lock()
	last := c.unsynced[key] && len(c.unsynced) == 1
	delete(c.unsynced, key)
	c.mu.Unlock()
	if last {
		c.initialSyncDone()
	}
}

func (c *Controller) initialSyncDone() {
	elapsed := time.Since(c.leadStart)
	c.metrics.initialSync.Set(elapsed.Seconds())
	c.log.Info("initial sync done: every Service reconciled", "elapsed", elapsed.Round(time.Millisecond))
}
