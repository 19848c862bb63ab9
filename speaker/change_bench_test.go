package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/forward"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/knftables"
)

// BenchmarkOneChange measures the speaker's CPU work for one EndpointSlice change with 1,000,
// 3,000 and 10,000 Services present, through the functions the informers' handlers call and
// what they trigger, without I/O (no nft run, no API server, no memberlist, no GoBGP):
//
//   - endpoint: a pod replaced on the same node (one endpoint's address changes, and back). The
//     planner's filter drops it; the forwarding tracker marks the Service and the forwarder's
//     batched sync renders it, diffs the Ruleset and builds the nft transaction (tx-bytes).
//   - new-node: an endpoint added on a node that had none of the Service's, and removed. The
//     serving nodes change, so the planner's filter kicks the speaker's sync too: the snapshot
//     from the caches, its forwarding step, the planner (BGP mode) and the desired status objects.
//     The Service's policy is Cluster: what this node announces and reports stays the same.
//   - local-here: the same for a Service with externalTrafficPolicy Local, on this node: it
//     starts announcing the Service (a path, its Announced), and stops on the next change.
//
// Each version is a new object, as an informer delivers it. cpu-ns/op is the process's CPU time
// (user and system, GC included) per change, less sensitive to a loaded machine than ns/op.
// The Services are LoadBalancers with a ClusterIP, an ingress IP and a NodePort, 5 endpoints
// each over 10 nodes. Figures and the command are in BENCHMARKS.md ("Speaker at scale").
func BenchmarkOneChange(b *testing.B) {
	for _, n := range []int{1000, 3000, 10000} {
		w := newChangeWorld(b, n)
		for _, kind := range []struct {
			name string
			plan bool // the planner's filter passes it
		}{{"endpoint", false}, {"new-node", true}, {"local-here", true}} {
			b.Run(fmt.Sprintf("services=%d/%s", n, kind.name), func(b *testing.B) {
				b.ReportAllocs()
				w.nft.bytes = 0
				versions := map[string][2]*discoveryv1.EndpointSlice{"endpoint": w.replaced, "new-node": w.added, "local-here": w.here}[kind.name]
				cpu0 := cpuTime()
				for i := 0; b.Loop(); i++ {
					old, cur := w.next(versions, i)
					// The informer calls the planner's handler and the forwarding tracker's.
					if w.filter.changed(old, cur) != kind.plan {
						b.Fatalf("the planner's filter: %v for %s", !kind.plan, kind.name)
					}
					w.tracker.sliceEvent(old, cur)
					if kind.plan {
						if len(w.plan()) == 0 {
							b.Fatal("no ServiceAnnouncement desired")
						}
					}
					w.fwd.syncChanges(w.ctx)
					if r := w.fwd.renderer.LastRendered(); r != 1 {
						b.Fatalf("%d Services rendered for one change", r)
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(w.nft.bytes)/float64(b.N), "tx-bytes/op")
			})
		}
	}
}

// cpuTime returns the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// changeWorld is a speaker's caches, forwarder and planner inputs with n Services.
type changeWorld struct {
	ctx      context.Context
	node     forward.Node
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	nodes    corelisters.NodeLister
	sliceIdx cache.Indexer
	filter   *servingFilter
	changes  *serviceChanges
	tracker  *changeTracker
	planning *Planning
	status   *statusCache
	fwd      *forwarder
	nft      *countingNFT
	pools    []*v1alpha1.IPPool
	bgpAds   []*v1alpha1.BGPAdvertisement
	peers    []*v1alpha1.BGPPeer
	// The changed Service's slice as it is, and with an endpoint replaced on its node (replaced)
	// or added on another node (added); local-here's Service's slice, and with an endpoint on
	// this node (here).
	replaced, added, here [2]*discoveryv1.EndpointSlice
}

// countingNFT is an nft that counts the transaction text it is given and runs nothing.
type countingNFT struct {
	*knftables.Fake
	bytes int
}

func (c *countingNFT) Run(_ context.Context, tx *knftables.Transaction) error {
	c.bytes += len(tx.String())
	return nil
}

func newChangeWorld(b *testing.B, n int) *changeWorld {
	b.Helper()
	ctx := context.Background()
	w := &changeWorld{ctx: ctx, nft: &countingNFT{Fake: knftables.NewFake(forward.TableFamily, forward.TableName)}}
	svcIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	w.sliceIdx = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	nodeIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	w.services, w.slices, w.nodes = corelisters.NewServiceLister(svcIdx), discoverylisters.NewEndpointSliceLister(w.sliceIdx), corelisters.NewNodeLister(nodeIdx)
	w.changes = newServiceChanges()
	w.tracker, w.filter, w.planning, w.status = newTracker(w.services), newServingFilter(w.changes), NewPlanning(), &statusCache{}
	for i := 1; i <= 10; i++ {
		must(b, nodeIdx.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("198.51.100.%d", i)}}}}))
	}
	w.node = forward.Node{Name: "node1", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ClusterIP: nthIPv4("198.18.0.0", i), ClusterIPs: []string{nthIPv4("198.18.0.0", i)},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: int32(30000 + i), Protocol: corev1.ProtocolTCP}},
		}}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: nthIPv4("198.18.128.0", i)}}
		if i == n/2+1 { // local-here's Service: its endpoints are on node6..10
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		}
		for j := range 5 {
			k := i*5 + j
			sl.Endpoints = append(sl.Endpoints, readyEndpoint(nthIPv4("198.19.0.0", k), fmt.Sprintf("node%d", k%10+1)))
		}
		must(b, svcIdx.Add(svc))
		must(b, w.sliceIdx.Add(sl))
		w.tracker.serviceEvent(nil, svc)
		w.tracker.sliceEvent(nil, sl)
		w.filter.changed(nil, sl)
	}
	w.pools = []*v1alpha1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.18.128.0/17"}}}}
	w.bgpAds = []*v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"routed"}}}}
	w.peers = []*v1alpha1.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: v1alpha1.BGPPeerSpec{PeerAddress: "198.51.100.254", PeerASN: 64496, MyASN: 64497}}}

	// The changed Service: one in the middle; the endpoint comes and goes on a node that has
	// none of its endpoints (5 endpoints on nodes i*5%10+1 ...: node1..5 or node6..10).
	key := fmt.Sprintf("default/svc-%05d-1", n/2)
	o, ok, err := w.sliceIdx.GetByKey(key)
	if err != nil || !ok {
		b.Fatalf("slice %s: %v", key, err)
	}
	sl := o.(*discoveryv1.EndpointSlice)
	w.replaced = [2]*discoveryv1.EndpointSlice{sl, sl.DeepCopy()}
	w.replaced[1].Endpoints[0].Addresses = []string{"198.19.255.1"}
	w.added = [2]*discoveryv1.EndpointSlice{sl, sl.DeepCopy()}
	other := "node10"
	if *sl.Endpoints[0].NodeName == "node6" {
		other = "node1"
	}
	w.added[1].Endpoints = append(w.added[1].Endpoints, readyEndpoint("198.19.255.1", other))
	key = fmt.Sprintf("default/svc-%05d-1", n/2+1)
	if o, ok, err = w.sliceIdx.GetByKey(key); err != nil || !ok {
		b.Fatalf("slice %s: %v", key, err)
	}
	sl = o.(*discoveryv1.EndpointSlice)
	w.here = [2]*discoveryv1.EndpointSlice{sl, sl.DeepCopy()}
	w.here[1].Endpoints = append(w.here[1].Endpoints, readyEndpoint("198.19.255.2", w.node.Name))

	m, err := newForwardMetrics(prometheus.NewRegistry())
	must(b, err)
	w.fwd, err = startForwarder(ctx, &forwarder{mode: ForwardingOn, applier: forward.NewApplier(w.nft), opts: forward.DefaultOptions(),
		log: slog.New(slog.DiscardHandler), metrics: m, now: time.Now})
	must(b, err)
	w.fwd.tracker = w.tracker
	svcs, _ := w.services.List(labels.Everything())
	slices, _ := w.slices.List(labels.Everything())
	// The speaker's first sync: every Service rendered, the whole table written.
	must(b, w.fwd.sync(ctx, w.node, svcs, slices))
	if len(w.plan()) == 0 {
		b.Fatal("no ServiceAnnouncement desired: the planner announces nothing")
	}
	return w
}

// next returns the i-th change between two versions of the changed Service's slice (old,
// new), stored in the cache as the informer does before it calls the handlers; a copy, so
// each version is a new object.
func (w *changeWorld) next(versions [2]*discoveryv1.EndpointSlice, i int) (old, cur *discoveryv1.EndpointSlice) {
	o, _, _ := w.sliceIdx.Get(versions[0])
	cur = versions[(i+1)%2].DeepCopy()
	_ = w.sliceIdx.Update(cur)
	return o.(*discoveryv1.EndpointSlice), cur
}

// plan is what a sync does after the forwarding step: the snapshot from the caches, the
// speaker's Planning, and the desired ServiceAnnouncements. It returns those.
func (w *changeWorld) plan() []*v1alpha1.ServiceAnnouncement {
	snap := &Snapshot{Node: w.node.Name, Interfaces: lanIfaces(), Handles: config.Class{Name: config.DefaultClassName}.Handles, Reach: map[string]Reach{},
		Pools: w.pools, BGPAds: w.bgpAds, Peers: w.peers}
	snap.Nodes, _ = w.nodes.List(labels.Everything())
	withServices(snap, w.services, w.filter, w.changes.take())
	if err := w.fwd.sync(w.ctx, w.node, snap.changedServices(), nil); err != nil {
		panic(err)
	}
	return w.status.announcements(w.node.Name, w.planning.Plan(snap))
}

func readyEndpoint(addr, node string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true)}}
}

// nthIPv4 returns base + i.
func nthIPv4(base string, i int) string {
	a := netip.MustParseAddr(base).As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
