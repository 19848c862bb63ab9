package speaker

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// TestInformersStop: the informers a speaker starts, its Lease informer included, stop when
// asked, so a speaker told to stop exits. (Waiting for the Lease informers before cancelling
// them kept every speaker with a Lease namespace, the chart's, running after SIGTERM.)
func TestInformersStop(t *testing.T) {
	_, ns := clients(t)
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Namespace, cfg.MetricsAddr = "node1", ns, ""
	reg := prometheus.NewRegistry()
	s, err := New(cfg, cluster(t), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, synced, stop := s.startInformers(ctx)
	if !cache.WaitFor(ctx, "", synced...) {
		t.Fatal("informers not synced within a minute")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the informers did not stop within 30 s")
	}
}

// TestCachesHoldWhatTheSpeakerReads: against a real API server, the speaker's caches keep
// Nodes, Services and ServiceAnnouncements without what it never reads (managed fields,
// kubectl's last-applied copy, a Node's images), and hold every L2 ServiceAnnouncement but of
// the BGP ones this node's alone; a BGP one another node takes over leaves them.
func TestCachesHoldWhatTheSpeakerReads(t *testing.T) {
	c, ns := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node := "slim-" + ns
	if _, err := c.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"zone": "a"}},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"198.18.0.0/24"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Kube.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	if _, err := c.Kube.CoreV1().Nodes().UpdateStatus(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"zone": "a"}},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"198.18.0.0/24"}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.7"}},
			Images:    []corev1.ContainerImage{{Names: []string{"registry.example/big:1"}, SizeBytes: 1 << 30}},
		},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{
			corev1.LastAppliedConfigAnnotation: `{"big":"copy"}`, "keep.example/x": "y"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip := []netip.Addr{netip.MustParseAddr("198.51.100.10")}
	for _, a := range []*v1alpha1.ServiceAnnouncement{
		announcementObject(node, v1alpha1.AnnouncementL2, &Announced{Namespace: ns, Name: "web", IPs: ip, Interfaces: []string{"eth0"}}),
		announcementObject("other", v1alpha1.AnnouncementL2, &Announced{Namespace: ns, Name: "web", IPs: ip, Interfaces: []string{"eth0"}}),
		announcementObject(node, v1alpha1.AnnouncementBGP, &Announced{Namespace: ns, Name: "mine", IPs: ip, Peers: []string{"tor"}, Nodes: []string{node}}),
		announcementObject("other", v1alpha1.AnnouncementBGP, &Announced{Namespace: ns, Name: "theirs", IPs: ip, Peers: []string{"tor"}, Nodes: []string{"other"}}),
	} {
		if err := c.CRD.Post().Namespace(ns).Resource("serviceannouncements").Body(a).Do(ctx).Error(); err != nil {
			t.Fatal(err)
		}
	}

	s := synced(t, ctx, node)
	n, err := s.factory.Core().V1().Nodes().Lister().Get(node)
	if err != nil {
		t.Fatal(err)
	}
	if n.Status.Images != nil || n.ManagedFields != nil || n.Labels["zone"] != "a" || len(n.Status.Addresses) != 1 || len(n.Spec.PodCIDRs) != 1 {
		t.Errorf("cached Node %+v: want its labels, pod ranges and addresses alone", n)
	}
	svc, err := s.factory.Core().V1().Services().Lister().Services(ns).Get("web")
	if err != nil {
		t.Fatal(err)
	}
	if svc.ManagedFields != nil || svc.Annotations[corev1.LastAppliedConfigAnnotation] != "" || svc.Annotations["keep.example/x"] != "y" || len(svc.Spec.Ports) != 1 {
		t.Errorf("cached Service %+v: want no managed fields or last-applied copy, the rest kept", svc)
	}
	cached := func() []string {
		var out []string
		for _, name := range []string{announcementsL2, announcementsOwnBGP} {
			for _, o := range s.crdInfs[name].GetStore().List() {
				a := o.(*v1alpha1.ServiceAnnouncement)
				if a.ManagedFields != nil {
					t.Errorf("cached ServiceAnnouncement %s has managed fields", a.Name)
				}
				if a.Namespace == ns {
					out = append(out, a.Name)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	want := []string{"mine.bgp", "web." + node + ".l2", "web.other.l2"}
	slices.Sort(want)
	if got := cached(); !slices.Equal(got, want) {
		t.Fatalf("cached ServiceAnnouncements %v, want %v", got, want)
	}

	// Another node takes "mine" over (as owned.REST's TakeOver does): it leaves this node's
	// cache, a deletion for it, so this node writes it again if it still reports it.
	var mine v1alpha1.ServiceAnnouncement
	if err := c.CRD.Get().Namespace(ns).Resource("serviceannouncements").Name("mine.bgp").Do(ctx).Into(&mine); err != nil {
		t.Fatal(err)
	}
	mine.Labels[LabelNode] = "other"
	if err := c.CRD.Put().Namespace(ns).Resource("serviceannouncements").Name("mine.bgp").Body(&mine).Do(ctx).Error(); err != nil {
		t.Fatal(err)
	}
	want = want[1:]
	for got := cached(); !slices.Equal(got, want); got = cached() {
		if ctx.Err() != nil {
			t.Fatalf("cached ServiceAnnouncements %v after the takeover, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two speakers that both report a Service's BGP object for a while (memberlist views differ
// during a partition, a join or a death) do not take it from each other as fast as the API
// server answers: each takeover is a deletion in the other's own-BGP cache, and the other's
// answer waits, longer each time. Once one of them stops reporting and deletes it, the other
// writes it again.
func TestReportersThatDisagreeDoNotFight(t *testing.T) {
	c, ns := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ip := []netip.Addr{netip.MustParseAddr("198.51.100.10")}
	var ss []*Speaker
	for _, node := range []string{"fa-" + ns, "fb-" + ns} {
		s := synced(t, ctx, node)
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		go s.announcements.Run(wctx)
		ss = append(ss, s)
	}
	nodes := []string{ss[0].cfg.NodeName, ss[1].cfg.NodeName}
	desired := func(s *Speaker) []*v1alpha1.ServiceAnnouncement {
		return []*v1alpha1.ServiceAnnouncement{announcementObject(s.cfg.NodeName, v1alpha1.AnnouncementBGP,
			&Announced{Namespace: ns, Name: "web", IPs: ip, Peers: []string{"tor"}, Nodes: nodes})}
	}
	get := func() (*v1alpha1.ServiceAnnouncement, error) {
		var a v1alpha1.ServiceAnnouncement
		return &a, c.CRD.Get().Namespace(ns).Resource("serviceannouncements").Name("web.bgp").Do(ctx).Into(&a)
	}
	rv := func() int {
		for {
			a, err := get()
			if err == nil {
				n, _ := strconv.Atoi(a.ResourceVersion)
				return n
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ss[0].announcements.Set(desired(ss[0]))
	rv()
	ss[1].announcements.Set(desired(ss[1]))
	r0 := rv()
	time.Sleep(4 * time.Second)
	// Takeovers at 1, 2 (+1), 4 (+2), 6 (+2), 10 (+4) s at most, counting both sides.
	if moved := rv() - r0; moved > 12 {
		t.Errorf("the object was written %d times in 4 s by two reporters: they fight", moved)
	}

	// fb stops reporting and deletes it if it holds it; fa writes it again.
	ss[1].announcements.Set(nil)
	deadline := time.Now().Add(90 * time.Second)
	for {
		a, err := get()
		if err == nil && a.Labels[LabelNode] == nodes[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web.bgp is %v (%v), want it written by %s", a.Labels, err, nodes[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An L2 ServiceAnnouncement that a speaker without the mode label wrote (before an upgrade)
// is in the L2 cache: probing and reaping read it.
func TestLegacyL2AnnouncementsAreCached(t *testing.T) {
	c, ns := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ip := []netip.Addr{netip.MustParseAddr("198.51.100.11")}
	a := announcementObject("old", v1alpha1.AnnouncementL2, &Announced{Namespace: ns, Name: "web", IPs: ip, Interfaces: []string{"eth0"}})
	delete(a.Labels, LabelMode)
	if err := c.CRD.Post().Namespace(ns).Resource("serviceannouncements").Body(a).Do(ctx).Error(); err != nil {
		t.Fatal(err)
	}
	s := synced(t, ctx, "legacy-"+ns)
	if s.probeFilter()(ip[0]) {
		t.Error("an address an unlabelled L2 ServiceAnnouncement lists would be probed")
	}
}

func TestRetakesBackOff(t *testing.T) {
	var r retakes
	now := time.Now()
	var got []time.Duration
	for range 10 {
		d, ok := r.next("ns/web.bgp", now)
		if !ok {
			t.Fatal("no forget pending, yet next said one is")
		}
		if _, ok := r.next("ns/web.bgp", now); ok {
			t.Fatal("a second forget while one is pending")
		}
		got = append(got, d)
		now = now.Add(d + 100*time.Millisecond) // the other side takes it back at once
		r.done("ns/web.bgp")
	}
	if got[0] != minRetake || got[len(got)-1] != maxRetake || !slices.IsSorted(got) {
		t.Errorf("delays %v, want doubling from %s to %s", got, minRetake, maxRetake)
	}
	if d, _ := r.next("ns/web.bgp", now.Add(10*maxRetake)); d != minRetake {
		t.Errorf("after a long quiet, delay %s, want %s", d, minRetake)
	}
}

// synced returns a speaker of node (the defaults, no metrics listener) whose informers have
// synced; they stop when the test ends.
func synced(t *testing.T, ctx context.Context, node string) *Speaker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName, cfg.MetricsAddr = node, ""
	reg := prometheus.NewRegistry()
	s, err := New(cfg, cluster(t), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	_, done, stop := s.startInformers(ctx)
	t.Cleanup(stop)
	if !cache.WaitFor(ctx, "", done...) {
		t.Fatal("informers not synced within a minute")
	}
	return s
}
