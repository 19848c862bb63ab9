// Package controller allocates external IPs to LoadBalancer Services from IPPools. It is the thin
// client-go edge around the pure allocator: informers over Services, IPPools and Namespaces feed
// one rate-limited workqueue; workers decide one at a time under a lock that owns the allocator
// (decisions are serial and deterministic) and write statuses in parallel, outside the lock;
// only the elected leader runs the workers.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/internal/endpoint"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Queue keys that are not Services ("namespace/name" never starts with a colon).
const (
	poolsKey      = ":pools"       // recompile the pool set
	poolStatusKey = ":pool-status" // write pool statuses and finalizers
	reservedKey   = ":reserved"    // recompute the reserved addresses (nodes', API server's)
)

// Controller allocates and releases external IPs. New wires it; Run starts it.
type Controller struct {
	cfg      Config
	log      *slog.Logger
	kube     kubernetes.Interface
	events   kubernetes.Interface // the event recorder's own client (own rate limit)
	crd      rest.Interface
	metrics  *metrics
	gatherer prometheus.Gatherer

	factory    informers.SharedInformerFactory
	apiFactory informers.SharedInformerFactory // the kubernetes Service's EndpointSlices
	services   corelisters.ServiceLister
	namespaces corelisters.NamespaceLister
	nodes      corelisters.NodeLister
	apiSlices  cache.SharedIndexInformer
	poolInf    cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string]
	recorder   record.EventRecorder
	broadcast  record.EventBroadcaster
	ready      atomic.Bool

	// mu owns the allocation state below. A worker holds it to decide, never across an API call.
	mu      sync.Mutex
	alloc   *allocator.Allocator
	views   map[string]poolView
	pending map[string]bool // Services that failed to allocate: retried when addresses free up
	// reserved are the nodes' and the API server's addresses (syncReserved).
	reserved map[netip.Addr]string
	// draining holds each address a decision freed, by the Service whose status still shows it
	// while the new status is being written: the allocator keeps it reserved until then, so
	// that with statuses written in parallel no other Service is given (and shows) an address
	// this one still shows.
	draining map[netip.Addr]string
	// retained attributes held addresses in no pool to the pool they came from, as the pools'
	// status.retainedAddresses said when this replica started leading (the allocator forgets
	// where a restored address came from) and as the allocator knows since.
	retained map[netip.Addr]string
	// unsynced are the Services restore queued that no reconcile has completed yet; the
	// initial sync is done when it empties (leadStart: when leading started).
	unsynced  map[string]bool
	leadStart time.Time
}

// New builds a controller from a client configuration. It starts nothing. reg receives the
// metrics; gatherer (usually the same registry) serves them on Config.MetricsAddr.
func New(cfg Config, restCfg *rest.Config, reg prometheus.Registerer, gatherer prometheus.Gatherer) (*Controller, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	clients, err := kubeclient.New(restCfg, cfg.API, cfg.Events)
	if err != nil {
		return nil, err
	}
	kube, crd, scheme := clients.Kube, clients.CRD, clients.Scheme
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	c := &Controller{
		cfg: cfg, log: cfg.Log, kube: kube, events: clients.Events, crd: crd, metrics: m, gatherer: gatherer,
		factory: informers.NewSharedInformerFactory(kube, 0),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ironlb-controller"}),
		alloc: allocator.New(), views: map[string]poolView{}, pending: map[string]bool{},
		draining: map[netip.Addr]string{},
	}
	c.broadcast = record.NewBroadcaster()
	c.recorder = c.broadcast.NewRecorder(scheme, corev1.EventSource{Component: "ironlb-controller"})

	svcInf := c.factory.Core().V1().Services()
	nsInf := c.factory.Core().V1().Namespaces()
	nodeInf := c.factory.Core().V1().Nodes()
	// Only the nodes' addresses are read: the cache keeps nothing else (a Node's status lists
	// its images and more, kilobytes per node).
	if err := nodeInf.Informer().SetTransform(nodeAddressesOnly); err != nil {
		return nil, fmt.Errorf("node transform: %w", err)
	}
	c.services, c.namespaces, c.nodes = svcInf.Lister(), nsInf.Lister(), nodeInf.Lister()
	c.apiFactory = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(metav1.NamespaceDefault),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=kubernetes"
		}))
	c.apiSlices = c.apiFactory.Discovery().V1().EndpointSlices().Informer()
	c.poolInf = cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(crd, "ippools", metav1.NamespaceAll, fields.Everything()),
		&v1alpha1.IPPool{}, 0, cache.Indexers{})

	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, DeleteFunc: enqueue,
		UpdateFunc: func(old, cur any) {
			o, n := old.(*corev1.Service), cur.(*corev1.Service)
			// Skip resyncs and updates that change nothing we read.
			if o.ResourceVersion == n.ResourceVersion || sameInputs(o, n) {
				return
			}
			enqueue(cur)
		},
	}); err != nil {
		return nil, fmt.Errorf("service handler: %w", err)
	}
	// A namespace's labels are part of its Services' requests. The Service and Namespace
	// informers watch separately, so a new namespace's Service can arrive first (and be
	// reconciled without the labels): a namespace's arrival requeues its Services too.
	nsServices := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			svcs, _ := c.services.Services(ns.Name).List(labels.Everything())
			for _, s := range svcs {
				enqueue(s)
			}
		}
	}
	if _, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: nsServices,
		UpdateFunc: func(old, cur any) {
			if !labels.Equals(old.(*corev1.Namespace).Labels, cur.(*corev1.Namespace).Labels) {
				nsServices(cur)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("namespace handler: %w", err)
	}
	// Reserved addresses: the nodes' and the API server's.
	reserved := func(any) { c.queue.Add(reservedKey) }
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: reserved, DeleteFunc: reserved,
		UpdateFunc: func(old, cur any) {
			if !slices.Equal(old.(*corev1.Node).Status.Addresses, cur.(*corev1.Node).Status.Addresses) {
				reserved(cur)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("node handler: %w", err)
	}
	if _, err := c.apiSlices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: reserved, DeleteFunc: reserved, UpdateFunc: func(_, cur any) { reserved(cur) },
	}); err != nil {
		return nil, fmt.Errorf("endpointslice handler: %w", err)
	}
	poolChanged := func(any) { c.queue.Add(poolsKey) }
	if _, err := c.poolInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poolChanged, DeleteFunc: poolChanged,
		UpdateFunc: func(old, cur any) {
			o, n := old.(*v1alpha1.IPPool), cur.(*v1alpha1.IPPool)
			if o.Generation != n.Generation || !o.DeletionTimestamp.Equal(n.DeletionTimestamp) ||
				!slices.Equal(o.Finalizers, n.Finalizers) {
				poolChanged(cur)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("pool handler: %w", err)
	}
	return c, nil
}

// sameInputs reports whether two versions of a Service ask the same of the allocator; the
// status (which the controller writes itself) is compared only by what it holds. The spec is
// compared in full: Services have no metadata.generation to tell a spec change.
func sameInputs(o, n *corev1.Service) bool {
	return labels.Equals(o.Labels, n.Labels) && labels.Equals(o.Annotations, n.Annotations) &&
		equality.Semantic.DeepEqual(o.Spec, n.Spec) && statusEqual(o.Status, n.Status)
}

// Run starts the informers and the metrics endpoint, campaigns for leadership and allocates
// while leading. It returns when ctx ends (nil) or when leadership is lost (an error: the
// process should exit and start over, as every client-go controller does).
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	c.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.events.CoreV1().Events("")})
	defer c.broadcast.Shutdown()
	defer endpoint.Serve(c.cfg.MetricsAddr, c.gatherer, &c.ready, c.log)()

	infCtx, stopInformers := context.WithCancel(ctx)
	c.factory.Start(infCtx.Done())
	c.apiFactory.Start(infCtx.Done())
	go c.poolInf.Run(infCtx.Done())
	defer func() { stopInformers(); c.factory.Shutdown(); c.apiFactory.Shutdown() }() // Shutdown waits for stopped informers
	synced := append([]cache.InformerSynced{c.poolInf.HasSynced, c.apiSlices.HasSynced},
		c.factory.Core().V1().Services().Informer().HasSynced,
		c.factory.Core().V1().Namespaces().Informer().HasSynced,
		c.factory.Core().V1().Nodes().Informer().HasSynced)
	if !cache.WaitForCacheSync(infCtx.Done(), synced...) {
		return nil // ctx ended
	}
	c.ready.Store(true)
	c.log.Info("caches synced; campaigning for leadership", "lease", c.cfg.Namespace+"/"+c.cfg.LeaseName, "identity", c.cfg.Identity)

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: c.cfg.Namespace, Name: c.cfg.LeaseName},
		Client:     c.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.cfg.Identity},
	}
	// The election runs on its own context, cancelled only after the worker stopped, so the
	// Lease is released (ReleaseOnCancel) strictly after the last allocation.
	electCtx, cancelElect := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelElect()
	workerDone := make(chan struct{})
	var led atomic.Bool
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: c.cfg.LeaseName,
		LeaseDuration: c.cfg.LeaseDuration, RenewDeadline: c.cfg.RenewDeadline, RetryPeriod: c.cfg.RetryPeriod,
		ReleaseOnCancel: c.cfg.ReleaseOnCancel,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				led.Store(true)
				defer close(workerDone)
				wctx, cancel := context.WithCancel(lctx)
				defer cancel()
				go func() {
					select {
					case <-ctx.Done():
					case <-wctx.Done():
					}
					cancel()
				}()
				c.lead(wctx)
			},
			OnStoppedLeading: func() { c.metrics.leader.Set(0) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	go func() {
		<-ctx.Done()
		if led.Load() {
			<-workerDone
		}
		cancelElect()
	}()
	le.Run(electCtx)
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("leadership lost")
}

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

func (c *Controller) classDescription() string {
	if c.cfg.Class.Only {
		return c.cfg.Class.Name
	}
	return c.cfg.Class.Name + " (or none)"
}
