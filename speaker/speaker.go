package speaker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/ironlb/ironlb/internal/owned"
	"github.com/ironlb/ironlb/l2"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Speaker announces this node's share of the external IPs. New wires it; Run starts it.
type Speaker struct {
	cfg      Config
	log      *slog.Logger
	kube     kubernetes.Interface
	events   kubernetes.Interface // the event recorder's own client (own rate limit)
	crd      rest.Interface
	gatherer prometheus.Gatherer
	metrics  *metrics

	factory   informers.SharedInformerFactory
	crdInfs   map[string]cache.SharedIndexInformer // by resource
	broadcast record.EventBroadcaster
	recorder  record.EventRecorder
	trigger   chan struct{}
	serving   *servingFilter  // the planner's EndpointSlice filter, which keeps the serving nodes
	changes   *serviceChanges // the Services whose planner inputs changed since the last sync
	// Used by the sync loop only: the planner with what it planned, the status objects built
	// for the plan, and those last handed to the writer (with holds or not).
	planning   *Planning
	status     statusCache
	lastStatus []*v1alpha1.ServiceAnnouncement
	lastHeld   bool
	// handlersSynced tell when the Service, EndpointSlice and Node handlers have seen every
	// object their informer listed.
	handlersSynced []cache.DoneChecker
	ready          atomic.Bool

	members   *l2.Members // created by Run, once the node's address is known
	keys      *keyWatcher // reloads members' keys from Config.MembersKeyFile
	liveness  *l2.Liveness
	leases    informers.SharedInformerFactory // the speakers' Leases; nil without a namespace
	byLease   []string                        // nodes alive by their Lease only, last logged
	recheck   *time.Timer                     // re-plans when a Lease goes stale
	reaped    map[string]bool                 // node/service whose L2 announcement was reaped while the node is gone
	retakes   retakes                         // BGP announcements another node took over: when to write them again
	announcer *l2.Announcer
	// announcements and the BGP runner's states write status objects off the data path.
	announcements *owned.Reconciler[*v1alpha1.ServiceAnnouncement]
	reaping       atomic.Bool // a reapDeadOwners pass is running
	fwd           *forwarder  // nil with --forwarding=off
	fwdMetric     *forwardMetrics
	removal       *removal // nil without Config.DaemonSet
	bgp           *bgpRunner
	drivers       map[v1alpha1.AnnouncementMode]driver // per mode, what applies its target
	published     atomic.Pointer[[]byte]               // the L2 reach and MACs last published (memberlist metadata, and the Lease)
	metaChanged   chan struct{}                        // published changed: renew the Lease now
	leaseMetas    leaseMetas                           // what the other speakers' Leases say of their reach
	clusterMACs   atomic.Pointer[macSet]
}

// New builds a speaker from a client configuration. It starts nothing.
func New(cfg Config, restCfg *rest.Config, reg prometheus.Registerer, gatherer prometheus.Gatherer) (*Speaker, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("speaker: the node name is required")
	}
	if cfg.Lease.Renew <= 0 || cfg.Lease.Duration <= cfg.Lease.Renew {
		return nil, fmt.Errorf("speaker: lease duration %v must exceed the renew interval %v (> 0)", cfg.Lease.Duration, cfg.Lease.Renew)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Log = cfg.Log.With("node", cfg.NodeName)
	clients, err := kubeclient.New(restCfg, cfg.API, cfg.Events)
	if err != nil {
		return nil, err
	}
	kube, crd, scheme := clients.Kube, clients.CRD, clients.Scheme
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	changes := newServiceChanges()
	s := &Speaker{
		cfg: cfg, log: cfg.Log, kube: kube, events: clients.Events, crd: crd, gatherer: gatherer, metrics: m,
		factory:     informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(slim)),
		crdInfs:     map[string]cache.SharedIndexInformer{},
		trigger:     make(chan struct{}, 1),
		metaChanged: make(chan struct{}, 1),
		liveness:    l2.NewLiveness(cfg.Lease, time.Now()),
		reaped:      map[string]bool{},
		serving:     newServingFilter(changes),
		changes:     changes,
		planning:    NewPlanning(),
	}
	if s.keys, err = newKeyWatcher(&s.cfg, reg); err != nil {
		return nil, err
	}
	if cfg.Namespace != "" {
		if s.leases, err = s.newLeaseInformer(cfg.Namespace); err != nil {
			return nil, fmt.Errorf("event handler: %w", err)
		}
	}
	s.broadcast = record.NewBroadcaster()
	s.recorder = s.broadcast.NewRecorder(scheme, corev1.EventSource{Component: "ironlb-speaker", Host: cfg.NodeName})
	acfg := cfg.Announcer
	if acfg.Logger == nil {
		acfg.Logger = cfg.Log
	}
	acfg.OnEvent = s.linkEvent
	acfg.Ours = s.ours
	s.announcer = l2.NewAnnouncer(acfg)
	if err := reg.Register(&l2Collector{a: s.announcer}); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	s.announcements = newAnnouncementWriter(crd, cfg.NodeName, cfg.Log)
	if s.removal, err = newRemoval(kube, cfg.DaemonSet, cfg.Log); err != nil {
		return nil, err
	}
	if s.fwdMetric, err = newForwardMetrics(reg); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	bm, err := newBGPMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	s.bgp = &bgpRunner{node: cfg.NodeName, log: cfg.Log, kube: kube, crd: crd, metrics: bm,
		states: newSessionWriter(crd, cfg.NodeName, cfg.Log), secrets: newSecretCache(kube, cfg.Log, s.kick)}
	s.drivers = map[v1alpha1.AnnouncementMode]driver{v1alpha1.AnnouncementL2: l2Driver{s}, v1alpha1.AnnouncementBGP: bgpDriver{s}}
	if err := s.watch(); err != nil {
		return nil, err
	}
	return s, nil
}

// kick asks the sync loop for a sync (several kicks before it runs make one).
func (s *Speaker) kick() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}
