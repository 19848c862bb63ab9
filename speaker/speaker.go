package speaker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/forward"
	"github.com/ironlb/ironlb/internal/endpoint"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/ironlb/ironlb/internal/owned"
	"github.com/ironlb/ironlb/l2"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
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
	ready     atomic.Bool

	members   *l2.Members // created by Run, once the node's address is known
	liveness  *l2.Liveness
	leases    informers.SharedInformerFactory // the speakers' Leases; nil without a namespace
	byLease   []string                        // nodes alive by their Lease only, last logged
	recheck   *time.Timer                     // re-plans when a Lease goes stale
	reaped    map[string]bool                 // node/service whose L2 announcement was reaped while the node is gone
	announcer *l2.Announcer
	// announcements and the BGP runner's states write status objects off the data path.
	announcements *owned.Reconciler[*v1alpha1.ServiceAnnouncement]
	reaping       atomic.Bool // a reapDeadOwners pass is running
	fwd           *forwarder  // nil with --forwarding=off
	fwdMetric     *forwardMetrics
	removal       *removal // nil without Config.DaemonSet
	bgp           *bgpRunner
	drivers       map[v1alpha1.AnnouncementMode]driver // per mode, what applies its target
	published     []byte                               // the L2 reach and MACs last published (memberlist metadata)
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
	s := &Speaker{
		cfg: cfg, log: cfg.Log, kube: kube, events: clients.Events, crd: crd, gatherer: gatherer, metrics: m,
		factory:  informers.NewSharedInformerFactory(kube, 0),
		crdInfs:  map[string]cache.SharedIndexInformer{},
		trigger:  make(chan struct{}, 1),
		liveness: l2.NewLiveness(cfg.Lease, time.Now()),
		reaped:   map[string]bool{},
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

	// Forwarding reads more of Services and EndpointSlices than the planner; it follows them
	// with a change tracker of its own (forwarding_tracker.go).
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		s.factory.Core().V1().Services().Informer():            s.handler("services", serviceChanged()),
		s.factory.Discovery().V1().EndpointSlices().Informer(): s.handler("endpointslices", sliceChanged()),
		s.factory.Core().V1().Nodes().Informer():               s.handler("nodes", nodeChanged),
	} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("event handler: %w", err)
		}
	}
	for resource, obj := range map[string]runtime.Object{
		"ippools":              &v1alpha1.IPPool{},
		"l2advertisements":     &v1alpha1.L2Advertisement{},
		"bgpadvertisements":    &v1alpha1.BGPAdvertisement{},
		"bgppeers":             &v1alpha1.BGPPeer{},
		"serviceannouncements": &v1alpha1.ServiceAnnouncement{},
	} {
		inf := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(crd, resource, metav1.NamespaceAll, fields.Everything()), obj, 0, cache.Indexers{})
		// The speakers' own ServiceAnnouncements: the planner does not read them; a deletion
		// of one of this node's makes the next sync write it again.
		var h cache.ResourceEventHandler = cache.ResourceEventHandlerFuncs{DeleteFunc: s.announcementDeleted}
		if resource != "serviceannouncements" {
			h = s.handler(resource, specChanged)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("event handler: %w", err)
		}
		s.crdInfs[resource] = inf
	}
	return s, nil
}

func (s *Speaker) kick() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run starts the informers, joins memberlist, and announces until ctx ends. On the way out it
// leaves memberlist first, so another node takes over at once.
func (s *Speaker) Run(ctx context.Context) error {
	s.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.events.CoreV1().Events("")})
	defer s.broadcast.Shutdown()
	defer endpoint.Serve(s.cfg.MetricsAddr, s.gatherer, &s.ready, s.log)()
	infCtx, stopInformers := context.WithCancel(context.WithoutCancel(ctx))
	s.factory.Start(infCtx.Done())
	defer func() { stopInformers(); s.factory.Shutdown() }()
	synced := []cache.InformerSynced{
		s.factory.Core().V1().Services().Informer().HasSynced,
		s.factory.Discovery().V1().EndpointSlices().Informer().HasSynced,
		s.factory.Core().V1().Nodes().Informer().HasSynced,
	}
	for _, inf := range s.crdInfs {
		go inf.Run(infCtx.Done())
		synced = append(synced, inf.HasSynced)
	}
	if s.removal != nil {
		go s.removal.run(infCtx.Done())
	}
	if s.leases != nil {
		s.leases.Start(infCtx.Done())
		defer s.leases.Shutdown()
		synced = append(synced, s.leases.Coordination().V1().Leases().Informer().HasSynced)
	} else {
		s.log.Warn("no namespace for this speaker's Lease: liveness from memberlist alone, a node cut off from the others' gossip claims their IPs")
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx ended
	}
	var err error

	if s.fwd, err = newForwarder(ctx, s.cfg.Forwarding, s.cfg.ForwardOptions, s.log, s.fwdMetric, s.factory); err != nil {
		return err
	}
	if s.fwd != nil {
		// Services work on this node as soon as the caches hold them, without waiting for
		// memberlist (which waits for peers up to JoinTimeout).
		if err := s.fwd.sync(ctx, s.forwardNode(s.nodesOnly()), s.listServices(), s.listSlices()); err != nil {
			s.log.Warn("forwarding", "err", err)
		}
	}
	if err := s.startMembers(ctx); err != nil {
		return err
	}
	annCtx, stopAnnouncer := context.WithCancel(context.WithoutCancel(ctx))
	annDone := make(chan error, 1)
	go func() { annDone <- s.announcer.Run(annCtx) }()
	// Status writers run until shutdown has set their last desired sets.
	statusCtx, stopStatus := context.WithCancel(context.WithoutCancel(ctx))
	var statusDone sync.WaitGroup
	statusDone.Go(func() { s.announcements.Run(statusCtx) })
	statusDone.Go(func() { s.bgp.states.Run(statusCtx) })
	stopWriters := func() { stopStatus(); statusDone.Wait() }
	go s.rejoin(ctx)
	go s.bgp.secrets.run(ctx)
	if s.leases != nil {
		go s.renewLease(ctx)
	}
	s.ready.Store(true)
	s.log.Info("speaker running")

	var prev Plan
	warned := warnings{}
	resync := time.NewTicker(s.cfg.Resync)
	defer resync.Stop()
	s.kick()
	for {
		select {
		case <-ctx.Done():
			s.shutdown(stopAnnouncer, annDone, stopWriters)
			return nil
		case <-s.trigger:
		case <-s.members.Changed():
		case <-resync.C:
		case <-s.bgp.changes():
			s.bgp.report()
			continue
		}
		prev = s.sync(ctx, prev, warned)
	}
}

// shutdown leaves memberlist first (the others take over at once), then stops answering and
// removes this node's status objects (within 3 s: an unreachable API server leaves them to the
// next start's prune), and the nftables table if the speaker's DaemonSet was deleted.
func (s *Speaker) shutdown(stopAnnouncer context.CancelFunc, annDone <-chan error, stopWriters func()) {
	start := time.Now()
	if err := s.members.Leave(time.Second); err != nil {
		s.log.Warn("leaving memberlist", "err", err)
	}
	s.log.Info("left memberlist", "elapsed", time.Since(start).Round(time.Millisecond))
	stopAnnouncer()
	<-annDone
	s.bgp.stop()
	stopWriters()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.announcements.Set(nil)
	if err := errors.Join(s.announcements.Flush(ctx), s.bgp.states.Flush(ctx), s.deleteLease(ctx)); err != nil {
		s.log.Warn("removing status objects on shutdown", "err", err)
	}
	if s.fwd != nil && s.removal.removed(ctx) {
		if err := s.fwd.remove(ctx); err != nil {
			s.log.Error("removing the nftables table of a speaker uninstalled", "err", err)
			return
		}
		s.log.Info("nftables table removed: this speaker's DaemonSet is deleted")
	}
}

func (s *Speaker) startMembers(ctx context.Context) error {
	self, err := s.factory.Core().V1().Nodes().Lister().Get(s.cfg.NodeName)
	if err != nil {
		return fmt.Errorf("this node %s: %w", s.cfg.NodeName, err)
	}
	mcfg := s.cfg.Members
	mcfg.NodeName = s.cfg.NodeName
	if mcfg.Log == nil {
		mcfg.Log = s.log
	}
	if !mcfg.BindAddr.IsValid() {
		addrs := nodeAddrs(self)
		if len(addrs) == 0 {
			return fmt.Errorf("node %s has no InternalIP to run memberlist on", s.cfg.NodeName)
		}
		mcfg.BindAddr = addrs[0]
	}
	if len(mcfg.SecretKey) == 0 {
		s.log.Warn("memberlist gossip is not encrypted: no key configured")
	}
	s.members = l2.NewMembers(mcfg)
	if err := s.members.Start(); err != nil {
		return err
	}
	// Join before planning: alone, this node would see every other node as dead.
	deadline := time.Now().Add(s.cfg.JoinTimeout)
	for {
		peers := s.peerAddrs()
		n, err := s.members.Join(peers)
		if len(peers) == 0 || n > 0 || len(s.members.Alive()) > 1 {
			s.log.Info("joined memberlist", "peers", len(peers), "alive", len(s.members.Alive()))
			return nil
		}
		if time.Now().After(deadline) {
			s.log.Warn("no other member reachable; planning alone", "peers", len(peers), "err", err)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// peerAddrs returns the other nodes' memberlist addresses (their first InternalIP).
func (s *Speaker) peerAddrs() []netip.Addr {
	nodes, _ := s.factory.Core().V1().Nodes().Lister().List(labels.Everything())
	var out []netip.Addr
	for _, n := range nodes {
		if a := nodeAddrs(n); n.Name != s.cfg.NodeName && len(a) > 0 {
			out = append(out, a[0])
		}
	}
	return out
}

// nodeAddrs returns a node's InternalIPs, IPv4 first.
func nodeAddrs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip)
		}
	}
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		switch {
		case a.Is4() == b.Is4():
			return 0
		case a.Is4():
			return -1
		}
		return 1
	})
	return out
}

// sync plans from the caches and applies the difference to the previous plan.
func (s *Speaker) sync(ctx context.Context, prev Plan, warned warnings) Plan {
	start := time.Now()
	snap, err := s.snapshot()
	if err != nil {
		s.log.Warn("reading this node's interfaces", "err", err)
		return prev
	}
	if s.fwd != nil {
		// Forwarding first: an announced IP must find its rules in place.
		if err := s.fwd.sync(ctx, s.forwardNode(snap), snap.Services, snap.Slices); err != nil {
			s.log.Warn("forwarding", "err", err)
			time.AfterFunc(time.Second, s.kick)
		}
	}
	plan := Compute(snap)
	s.metrics.plan.Observe(time.Since(start).Seconds())
	for _, t := range plan.Targets {
		s.drivers[t.Mode()].apply(ctx, t, snap)
		s.reportAnnouncements(prev, t)
	}
	for _, w := range warned.fresh(plan.Warnings) {
		s.recorder.Event(warningObject(w), corev1.EventTypeWarning, w.Reason, w.Message)
		s.log.Warn(w.Message, "kind", w.Kind, "name", w.Name, "reason", w.Reason)
	}
	// Status objects: handed to their writers, never waited for.
	s.announcements.Set(withHolds(announcements(s.cfg.NodeName, plan), s.announcer.Held()))
	s.log.Debug("plan applied", "elapsed", time.Since(start))
	return plan
}

// nodesOnly is a snapshot with the nodes only, for forwardNode.
func (s *Speaker) nodesOnly() *Snapshot {
	nodes, _ := s.factory.Core().V1().Nodes().Lister().List(labels.Everything())
	return &Snapshot{Nodes: nodes}
}

func (s *Speaker) listServices() []*corev1.Service {
	svcs, _ := s.factory.Core().V1().Services().Lister().List(labels.Everything())
	return svcs
}

func (s *Speaker) listSlices() []*discoveryv1.EndpointSlice {
	slices, _ := s.factory.Discovery().V1().EndpointSlices().Lister().List(labels.Everything())
	return slices
}

func (s *Speaker) snapshot() (*Snapshot, error) {
	ifaces, err := l2.Interfaces()
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{
		Node: s.cfg.NodeName, Interfaces: ifaces, Alive: s.alive(), Handles: s.cfg.Class.Handles,
		Reach: map[string]Reach{},
	}
	macs := macSet{}
	for _, m := range nodeMACs(ifaces) {
		macs[[6]byte(m)] = true
	}
	for node, meta := range s.members.Metas() {
		var theirs []net.HardwareAddr
		snap.Reach[node], theirs = DecodeMeta(meta)
		for _, m := range theirs {
			macs[[6]byte(m)] = true
		}
	}
	s.clusterMACs.Store(&macs)
	snap.Nodes, _ = s.factory.Core().V1().Nodes().Lister().List(labels.Everything())
	snap.Services, _ = s.factory.Core().V1().Services().Lister().List(labels.Everything())
	snap.Slices, _ = s.factory.Discovery().V1().EndpointSlices().Lister().List(labels.Everything())
	for _, o := range s.crdInfs["ippools"].GetStore().List() {
		snap.Pools = append(snap.Pools, o.(*v1alpha1.IPPool))
	}
	for _, o := range s.crdInfs["l2advertisements"].GetStore().List() {
		snap.L2Ads = append(snap.L2Ads, o.(*v1alpha1.L2Advertisement))
	}
	for _, o := range s.crdInfs["bgpadvertisements"].GetStore().List() {
		snap.BGPAds = append(snap.BGPAds, o.(*v1alpha1.BGPAdvertisement))
	}
	for _, o := range s.crdInfs["bgppeers"].GetStore().List() {
		snap.Peers = append(snap.Peers, o.(*v1alpha1.BGPPeer))
	}
	return snap, nil
}

// warnings remembers the warnings reported, so each is reported once while it lasts; one
// that went away and comes back is reported again.
type warnings map[Warning]bool

// fresh returns the warnings of ws not reported yet, and forgets the reported ones that are no
// longer in ws.
func (seen warnings) fresh(ws []Warning) []Warning {
	var out []Warning
	now := make(map[Warning]bool, len(ws))
	for _, w := range ws {
		now[w] = true
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	for w := range seen {
		if !now[w] {
			delete(seen, w)
		}
	}
	return out
}

// publishReach gives the other nodes this node's L2 reach and MACs (memberlist metadata), when
// they changed.
func (s *Speaker) publishReach(r Reach, macs []net.HardwareAddr) {
	meta, all := EncodeMeta(r, macs)
	if bytes.Equal(meta, s.published) {
		return
	}
	if !all {
		s.log.Warn("this node cannot answer for the addresses of too many pools to tell the others; some may stay dark", "pools", len(r))
	}
	if err := s.members.SetMeta(meta); err != nil {
		s.log.Warn("publishing this node's L2 reach", "err", err)
		return
	}
	s.published = meta
	s.log.Info("published this node's L2 reach", "limited", len(r))
}

func warningObject(w Warning) runtime.Object {
	meta := metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}
	if w.Kind == "Service" {
		return &corev1.Service{ObjectMeta: meta}
	}
	return &v1alpha1.L2Advertisement{ObjectMeta: meta}
}

func joinAddrs(ips []netip.Addr) string {
	out := ""
	for i, ip := range ips {
		if i > 0 {
			out += ", "
		}
		out += ip.String()
	}
	return out
}

// linkEvent reports an interface the announcer cannot answer on as a Warning event on the
// Services whose IPs need it; the other interfaces keep working.
func (s *Speaker) linkEvent(ev l2.Event) {
	switch ev.Kind {
	case l2.LinkFailed:
		s.log.Warn("cannot answer on an interface", "interface", ev.Interface, "protocol", ev.Protocol, "ips", joinAddrs(ev.IPs), "err", ev.Err)
		svcs, _ := s.factory.Core().V1().Services().Lister().List(labels.Everything())
		for _, svc := range svcs {
			for _, ip := range config.IngressIPs(svc) {
				if slices.Contains(ev.IPs, ip) {
					s.recorder.Eventf(svc, corev1.EventTypeWarning, "InterfaceFailed", "node %s cannot answer %s for %s on %s: %v",
						s.cfg.NodeName, ev.Protocol, ip, ev.Interface, ev.Err)
				}
			}
		}
	case l2.LinkUp:
		s.log.Info("answering on an interface", "interface", ev.Interface, "protocol", ev.Protocol, "ips", joinAddrs(ev.IPs))
	case l2.AddressClaimed, l2.AddressConflict, l2.ConflictResolved:
		s.addressEvent(ev)
	}
}

// forwardNode is this node as the forwarding rules see it: its name, InternalIPs, pod ranges and zone.
func (s *Speaker) forwardNode(snap *Snapshot) forward.Node {
	n := forward.Node{Name: s.cfg.NodeName}
	if self := nodeByName(snap.Nodes, s.cfg.NodeName); self != nil {
		n.Addresses = nodeAddrs(self)
		n.PodCIDRs = podCIDRs(self)
		n.Zone = self.Labels[corev1.LabelTopologyZone]
	}
	return n
}

// rejoin contacts, every RejoinInterval, the nodes memberlist does not list: new nodes, and
// nodes declared dead that came back (after a partition neither side probes the other).
func (s *Speaker) rejoin(ctx context.Context) {
	t := time.NewTicker(s.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.members.Join(s.peerAddrs()); n > 0 {
			s.log.Info("rejoined members", "count", n)
		} else if err != nil {
			s.log.Debug("joining members", "err", err)
		}
	}
}

// reportAnnouncements logs and records as events on the Services what this node starts or
// stops announcing in one mode: an event when a node takes an IP (an ownership move in L2).
func (s *Speaker) reportAnnouncements(prevPlan Plan, t Target) {
	var prev map[string]*Announced
	for _, p := range prevPlan.Targets {
		if p.Mode() == t.Mode() {
			prev = p.Announced()
		}
	}
	mode, cur := string(t.Mode()), t.Announced()
	for key, a := range cur {
		if old := prev[key]; old != nil && slices.Equal(old.IPs, a.IPs) {
			continue
		}
		if svc, err := s.factory.Core().V1().Services().Lister().Services(a.Namespace).Get(a.Name); err == nil {
			s.recorder.Eventf(svc, corev1.EventTypeNormal, "Announcing", "node %s announces %s %s (%s)", s.cfg.NodeName, joinAddrs(a.IPs), t.Where(a), mode)
		}
		s.log.Info("announcing", "service", key, "mode", mode, "ip", joinAddrs(a.IPs), "where", t.Where(a))
	}
	for key, a := range prev {
		if cur[key] == nil {
			s.log.Info("no longer announcing", "service", key, "mode", mode, "ip", joinAddrs(a.IPs))
		}
	}
}

// reapDeadOwners (run off the data path, one pass at a time) deletes the L2 ServiceAnnouncements that a dead node (not alive: killed, or cut off
// from memberlist without renewing its Lease) left for Services this node now owns, so that
// `kubectl get serviceannouncements` names the one node that answers. A node that comes back
// writes its own again. A node's announcement of a Service is reaped once while the node is
// gone: a node cut off from memberlist that still writes (and re-creates what was reaped) is
// left alone after that, so the two sides of a partition never delete and re-create in a loop.
func (s *Speaker) reapDeadOwners(ctx context.Context, owned map[string]*Announced, alive map[string]bool) {
	if alive == nil {
		return
	}
	for k := range s.reaped {
		if node, _, _ := strings.Cut(k, "|"); alive[node] {
			delete(s.reaped, k)
		}
	}
	for _, o := range s.crdInfs["serviceannouncements"].GetStore().List() {
		a := o.(*v1alpha1.ServiceAnnouncement)
		svc := a.Namespace + "/" + a.ServiceName
		if a.Mode != v1alpha1.AnnouncementL2 || a.NodeName == s.cfg.NodeName || alive[a.NodeName] ||
			owned[svc] == nil || s.reaped[a.NodeName+"|"+svc] {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.crd.Delete().Namespace(a.Namespace).Resource("serviceannouncements").Name(a.Name).Do(dctx).Error()
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			s.log.Warn("removing a dead node's ServiceAnnouncement", "service", a.Namespace+"/"+a.ServiceName, "node", a.NodeName, "err", err)
			continue
		}
		s.reaped[a.NodeName+"|"+svc] = true
		s.log.Info("removed a dead node's ServiceAnnouncement", "service", a.Namespace+"/"+a.ServiceName, "node", a.NodeName)
	}
}

// announcementDeleted notices when one of this node's ServiceAnnouncements is deleted by
// someone else, so the next sync writes it again. A BGP one may have been this node's before
// another reporter took it over and then deleted it (the two disagreed on the reporter for a
// moment): this node forgets it too, so that it writes it again if it reports it.
func (s *Speaker) announcementDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if a, ok := obj.(*v1alpha1.ServiceAnnouncement); ok && (a.Labels[LabelNode] == s.cfg.NodeName || a.Mode == v1alpha1.AnnouncementBGP) {
		s.announcements.Forget(owned.Key(a))
		s.kick()
	}
}
