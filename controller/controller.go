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
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/internal/endpoint"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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

func (c *Controller) classDescription() string {
	if c.cfg.Class.Only {
		return c.cfg.Class.Name
	}
	return c.cfg.Class.Name + " (or none)"
}
