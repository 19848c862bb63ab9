package speaker

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/internal/owned"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// The keys in crdInfs of the ServiceAnnouncement informers.
const (
	announcementsL2     = "serviceannouncements/l2"
	announcementsOwnBGP = "serviceannouncements/bgp"
)

// watch registers the informers' event handlers: the planner's filters (changes.go) on
// Services, EndpointSlices, Nodes and ironlb's configuration, and the speakers' own
// ServiceAnnouncements, which trigger nothing but a deletion of one of this node's. Forwarding
// reads more of Services and EndpointSlices than the planner; it follows them with a change
// tracker of its own (forwarding_tracker.go).
func (s *Speaker) watch() error {
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		s.factory.Core().V1().Services().Informer():            s.eventHandler("services", s.changes.serviceEvent(serviceChanged())),
		s.factory.Discovery().V1().EndpointSlices().Informer(): s.eventHandler("endpointslices", s.serving.changed),
		s.factory.Core().V1().Nodes().Informer():               s.handler("nodes", nodeChanged),
	} {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("event handler: %w", err)
		}
		// The first sync waits for the handlers too: the EndpointSlice filter holds the serving
		// nodes the planner reads (Snapshot.Serving).
		s.handlersSynced = append(s.handlersSynced, reg.HasSyncedChecker())
	}
	for resource, obj := range map[string]runtime.Object{
		"ippools":           &v1alpha1.IPPool{},
		"l2advertisements":  &v1alpha1.L2Advertisement{},
		"bgpadvertisements": &v1alpha1.BGPAdvertisement{},
		"bgppeers":          &v1alpha1.BGPPeer{},
	} {
		inf := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(s.crd, resource, metav1.NamespaceAll, fields.Everything()), obj, 0, cache.Indexers{})
		if _, err := inf.AddEventHandler(s.handler(resource, specChanged)); err != nil {
			return fmt.Errorf("event handler: %w", err)
		}
		s.crdInfs[resource] = inf
	}
	// The speakers' own ServiceAnnouncements: the planner does not read them. Every L2 one
	// (probing and reaping read them; "not BGP" includes those an earlier version wrote
	// without the mode label, so that a rolling upgrade neither probes an address an old
	// speaker answers for nor leaves a dead node's objects unreaped) and this node's BGP ones;
	// a deletion of one of this node's makes the writer write it again. A BGP one that another
	// node takes over leaves this node's selection, which is a deletion here too
	// (bgpAnnouncementGone).
	for name, h := range map[string]struct {
		sel     string
		deleted func(any)
	}{
		announcementsL2:     {LabelMode + "!=bgp", s.l2AnnouncementDeleted},
		announcementsOwnBGP: {labels.Set{LabelMode: "bgp", LabelNode: s.cfg.NodeName}.String(), s.bgpAnnouncementGone},
	} {
		lw := cache.NewFilteredListWatchFromClient(s.crd, "serviceannouncements", metav1.NamespaceAll, func(o *metav1.ListOptions) { o.LabelSelector = h.sel })
		inf := cache.NewSharedIndexInformer(lw, &v1alpha1.ServiceAnnouncement{}, 0, cache.Indexers{})
		if err := inf.SetTransform(slim); err != nil {
			return fmt.Errorf("informer transform: %w", err)
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: h.deleted}); err != nil {
			return fmt.Errorf("event handler: %w", err)
		}
		s.crdInfs[name] = inf
	}
	return nil
}

// startInformers starts the informers (and the removal watch) and returns what tells they have
// synced: the Services, EndpointSlices and Nodes forwarding reads, and everything (those, the
// planner's handlers, ironlb's configuration, the Leases); and a stop that stops them and waits
// for them. Stopping cancels first: a factory's Shutdown waits for informers whose stop channel
// is closed, so waiting before cancelling would never return (a speaker that never exits on
// SIGTERM).
func (s *Speaker) startInformers(ctx context.Context) (forwarding, all []cache.DoneChecker, stop func()) {
	infCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.factory.Start(infCtx.Done())
	forwarding = []cache.DoneChecker{
		s.factory.Core().V1().Services().Informer().HasSyncedChecker(),
		s.factory.Discovery().V1().EndpointSlices().Informer().HasSyncedChecker(),
		s.factory.Core().V1().Nodes().Informer().HasSyncedChecker(),
	}
	synced := slices.Concat(forwarding, s.handlersSynced)
	var wg sync.WaitGroup
	for _, inf := range s.crdInfs {
		wg.Go(func() { inf.Run(infCtx.Done()) })
		synced = append(synced, inf.HasSyncedChecker())
	}
	if s.removal != nil {
		go s.removal.run(infCtx.Done())
	}
	if s.leases != nil {
		s.leases.Start(infCtx.Done())
		synced = append(synced, s.leases.Coordination().V1().Leases().Informer().HasSyncedChecker())
	} else {
		s.log.Warn("no namespace for this speaker's Lease: liveness from memberlist alone, a node cut off from the others' gossip claims their IPs")
	}
	return forwarding, synced, func() {
		cancel()
		s.factory.Shutdown()
		if s.leases != nil {
			s.leases.Shutdown()
		}
		wg.Wait()
	}
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

// snapshot reads the caches. changed are the keys of the Services that may have changed since
// the previous snapshot (serviceChanges); nil: any, and the snapshot lists them all.
func (s *Speaker) snapshot(changed map[string]bool) (*Snapshot, error) {
	ifaces, err := l2.Interfaces()
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{
		Node: s.cfg.NodeName, Interfaces: ifaces, Handles: s.cfg.Class.Handles, Reach: map[string]Reach{},
	}
	snap.Alive, snap.Renewing = s.alive()
	macs := macSet{}
	for _, m := range nodeMACs(ifaces) {
		macs[[6]byte(m)] = true
	}
	metas := s.members.Metas()
	for node := range snap.Alive {
		if _, ok := metas[node]; !ok { // alive by its Lease only
			metas[node], _ = s.leaseMetas.get(node)
		}
	}
	for node, meta := range metas {
		var theirs []net.HardwareAddr
		snap.Reach[node], theirs = DecodeMeta(meta)
		for _, m := range theirs {
			macs[[6]byte(m)] = true
		}
	}
	s.clusterMACs.Store(&macs)
	snap.Nodes, _ = s.factory.Core().V1().Nodes().Lister().List(labels.Everything())
	withServices(snap, s.factory.Core().V1().Services().Lister(), s.serving, changed)
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

// withServices gives a snapshot the Services and their serving nodes (the planner's
// EndpointSlice filter keeps them): every Service, or (changed not nil) those changed alone,
// looked up by key, with the list left to when the planner needs it.
func withServices(snap *Snapshot, lister corelisters.ServiceLister, serving *servingFilter, changed map[string]bool) {
	snap.ServingOf = serving.of
	snap.ListServices = func() []*corev1.Service {
		svcs, _ := lister.List(labels.Everything())
		return svcs
	}
	if changed == nil {
		snap.Services = snap.ListServices()
		return
	}
	snap.Changed = changed
	snap.Service = func(key string) *corev1.Service {
		ns, name, _ := strings.Cut(key, "/")
		svc, err := lister.Services(ns).Get(name)
		if err != nil {
			return nil
		}
		return svc
	}
}

// changedServices returns the snapshot's Services that may have changed: all of them when it
// does not say which.
func (snap *Snapshot) changedServices() []*corev1.Service {
	if snap.Changed == nil {
		return snap.Services
	}
	out := make([]*corev1.Service, 0, len(snap.Changed))
	for key := range snap.Changed {
		if svc := snap.Service(key); svc != nil {
			out = append(out, svc)
		}
	}
	return out
}

// l2AnnouncementDeleted notices when one of this node's L2 ServiceAnnouncements is deleted by
// someone else (a reaper that thought this node dead), so the writer writes it again.
func (s *Speaker) l2AnnouncementDeleted(obj any) {
	if a := deletedAnnouncement(obj); a != nil && a.Mode == v1alpha1.AnnouncementL2 && a.Labels[LabelNode] == s.cfg.NodeName {
		s.announcements.Forget(owned.Key(a))
		s.kick()
	}
}

// bgpAnnouncementGone notices when one of this node's BGP ServiceAnnouncements leaves its
// selection: deleted, or taken over by another reporter. The watch does not say which, and
// after a takeover this node no longer sees the object, so it cannot see the new writer delete
// it later (the two disagreed on the reporter for a moment, and the new one changed its mind):
// the writer forgets it, and writes it again if this node still reports it. Not at once: two
// nodes that disagree on the reporter for a while (memberlist views differ during a partition,
// a join or a death) would each take the object back the moment the other took it, as fast as
// the API server answers. The first forget waits minRetake; one soon after another for the
// same object waits twice as long as the last, up to maxRetake.
func (s *Speaker) bgpAnnouncementGone(obj any) {
	a := deletedAnnouncement(obj)
	if a == nil {
		return
	}
	key := owned.Key(a)
	if d, ok := s.retakes.next(key, time.Now()); ok {
		time.AfterFunc(d, func() {
			s.retakes.done(key)
			s.announcements.Forget(key)
			s.kick()
		})
	}
}

func deletedAnnouncement(obj any) *v1alpha1.ServiceAnnouncement {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	a, _ := obj.(*v1alpha1.ServiceAnnouncement)
	return a
}

// minRetake and maxRetake bound how long after one of its BGP ServiceAnnouncements left its
// selection a node forgets it (bgpAnnouncementGone).
const (
	minRetake = time.Second
	maxRetake = time.Minute
)

// retakes spaces out the forgets of BGP ServiceAnnouncements that left this node's selection.
type retakes struct {
	mu   sync.Mutex
	keys map[string]*retake
}

type retake struct {
	delay   time.Duration
	last    time.Time // when the last forget was scheduled
	pending bool
}

// next returns how long to wait before forgetting key, and false if a forget of it is pending.
func (r *retakes) next(key string, now time.Time) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]*retake{}
	}
	for k, rt := range r.keys {
		if !rt.pending && now.Sub(rt.last) > 4*maxRetake {
			delete(r.keys, k)
		}
	}
	rt := r.keys[key]
	if rt == nil {
		rt = &retake{}
		r.keys[key] = rt
	}
	if rt.pending {
		return 0, false
	}
	if rt.delay > 0 && now.Sub(rt.last) < 4*rt.delay {
		rt.delay = min(2*rt.delay, maxRetake)
	} else {
		rt.delay = minRetake
	}
	rt.last, rt.pending = now, true
	return rt.delay, true
}

// done records that key's pending forget ran.
func (r *retakes) done(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rt := r.keys[key]; rt != nil {
		rt.pending = false
	}
}

// slim drops from an object what the speaker never reads, before its caches keep it: every
// object's managed fields and kubectl's last-applied copy (together often more than the rest of
// a Service or EndpointSlice), and of a Node all but its name, labels, pod ranges and addresses
// (its status lists its images and conditions). The caches are most of the speaker's memory.
func slim(obj any) (any, error) {
	if n, ok := obj.(*corev1.Node); ok {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels},
			Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
			Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
		}, nil
	}
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a[corev1.LastAppliedConfigAnnotation] != "" {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	return obj, nil
}
