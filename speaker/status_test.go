package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Status object names are injective: two different (Service, node, mode) or (node, peer)
// tuples never share a name, including the ones that collided when the parts were joined
// with "-" (which names may contain).
func TestStatusObjectNamesAreInjective(t *testing.T) {
	long := strings.Repeat("n", 230) + ".node-" + strings.Repeat("x", 14)
	for _, tc := range []struct {
		name string
		a, b [3]string // service, node, mode
	}{
		{"a dash moves from the Service to the node", [3]string{"web-a", "b", "L2"}, [3]string{"web", "a-b", "L2"}},
		{"the node's dots", [3]string{"web", "a.b", "L2"}, [3]string{"web", "a", "L2"}},
		{"mode", [3]string{"web", "n", "L2"}, [3]string{"web", "n", "BGP"}},
		{"long names, cut", [3]string{"web", long + "1", "L2"}, [3]string{"web", long + "2", "L2"}},
		{"a node named bgp", [3]string{"web", "bgp", "L2"}, [3]string{"web", "n", "BGP"}},
		{"a Service named like an L2 object's start", [3]string{"web", "n", "L2"}, [3]string{"web", "n", "BGP"}},
	} {
		t.Run("announcement: "+tc.name, func(t *testing.T) {
			na := announcementName(tc.a[0], tc.a[1], v1alpha1.AnnouncementMode(tc.a[2]))
			nb := announcementName(tc.b[0], tc.b[1], v1alpha1.AnnouncementMode(tc.b[2]))
			if na == nb {
				t.Errorf("%v and %v are both named %q", tc.a, tc.b, na)
			}
			checkName(t, na)
			checkName(t, nb)
		})
	}
	for _, tc := range []struct {
		name string
		a, b [2]string // node, peer
	}{
		{"a dash moves from the node to the peer", [2]string{"node-a", "router"}, [2]string{"node", "a-router"}},
		{"a dot moves from the node to the peer", [2]string{"node.a", "router"}, [2]string{"node", "a.router"}},
		{"long names, cut", [2]string{long, "router-1"}, [2]string{long, "router-2"}},
	} {
		t.Run("session: "+tc.name, func(t *testing.T) {
			na, nb := sessionStateName(tc.a[0], tc.a[1]), sessionStateName(tc.b[0], tc.b[1])
			if na == nb {
				t.Errorf("%v and %v are both named %q", tc.a, tc.b, na)
			}
			checkName(t, na)
			checkName(t, nb)
		})
	}
	// Readable: the parts show.
	if got, want := announcementName("web", "node-1", v1alpha1.AnnouncementL2), "web.node-1.l2"; got != want {
		t.Errorf("announcementName(web, node-1, L2) = %q, want %q", got, want)
	}
	// One BGP object per Service, whichever node writes it.
	if a, b := announcementName("web", "node-1", v1alpha1.AnnouncementBGP), announcementName("web", "node-2", v1alpha1.AnnouncementBGP); a != "web.bgp" || b != a {
		t.Errorf("BGP names %q and %q, want web.bgp for both", a, b)
	}
	if got := sessionStateName("node-1", "router-a"); !strings.HasPrefix(got, "node-1.router-a") {
		t.Errorf("sessionStateName(node-1, router-a) = %q, want it to start with node-1.router-a", got)
	}
}

// checkName fails unless name is a valid object name (a DNS subdomain of at most 253 characters).
func checkName(t *testing.T, name string) {
	t.Helper()
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		t.Errorf("name %q: %v", name, errs)
	}
}

// A speaker upgraded from a version that named its objects "<service>-<node>-<mode>" and
// "<node>-<peer>" replaces them: the old names are deleted, the new ones written.
func TestOldStatusObjectNamesAreReplaced(t *testing.T) {
	c, ns := clients(t)
	ctx := context.Background()
	node := fmt.Sprintf("upgrade-%s", ns)
	old := &v1alpha1.ServiceAnnouncement{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "web-" + node + "-l2", Labels: map[string]string{LabelNode: node}},
		ServiceName: "web", NodeName: node, Mode: v1alpha1.AnnouncementL2, IPs: []string{"198.51.100.1"}, Interfaces: []string{"eth0"},
	}
	if err := c.CRD.Post().Namespace(ns).Resource("serviceannouncements").Body(old).Do(ctx).Error(); err != nil {
		t.Fatal(err)
	}
	oldSession := &v1alpha1.BGPSessionState{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-router-a", Labels: map[string]string{LabelNode: node}},
		NodeName:   node, PeerName: "router-a", PeerAddress: "192.0.2.1", State: v1alpha1.BGPState("Idle"),
	}
	if err := c.CRD.Post().Resource("bgpsessionstates").Body(oldSession).Do(ctx).Error(); err != nil {
		t.Fatal(err)
	}

	w := newAnnouncementWriter(c.CRD, node, slog.Default())
	plan := Plan{Targets: []Target{&L2Target{Services: map[string]*Announced{ns + "/web": {Namespace: ns, Name: "web",
		IPs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, Interfaces: []string{"eth0"}}}}}}
	w.Set(announcements(node, plan))
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var list v1alpha1.ServiceAnnouncementList
	if err := c.CRD.Get().Namespace(ns).Resource("serviceannouncements").Do(ctx).Into(&list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list.Items {
		names = append(names, a.Name)
	}
	if want := []string{"web." + node + ".l2"}; !slices.Equal(names, want) {
		t.Errorf("ServiceAnnouncements after the first sync: %v, want %v", names, want)
	}

	reg := prometheus.NewRegistry()
	m, err := newBGPMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := &bgpRunner{node: node, log: slog.Default(), kube: c.Kube, crd: c.CRD, metrics: m,
		states: newSessionWriter(c.CRD, node, slog.Default()), secrets: newSecretCache(c.Kube, slog.Default(), nil)}
	r.report()
	if err := r.states.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	err = c.CRD.Get().Resource("bgpsessionstates").Name(oldSession.Name).Do(ctx).Error()
	if !apierrors.IsNotFound(err) {
		t.Errorf("the old-named BGPSessionState after the first report: %v, want it deleted", err)
	}
}

// A Service's BGP ServiceAnnouncement changes writers when its reporter changes: the new
// reporter takes the object over, and the old one, which no longer reports it, leaves it alone
// (its delete is conditional on what it wrote). Last, the object goes when no one reports it.
func TestBGPAnnouncementChangesWriters(t *testing.T) {
	c, ns := clients(t)
	ctx := context.Background()
	report := func(nodes ...string) Plan {
		return Plan{Targets: []Target{&BGPTarget{Reports: map[string]*Announced{ns + "/web": {Namespace: ns, Name: "web",
			IPs: []netip.Addr{netip.MustParseAddr("203.0.113.10")}, Peers: []string{"tor"}, Nodes: nodes}}}}}
	}
	a := newAnnouncementWriter(c.CRD, "node-a", slog.Default())
	b := newAnnouncementWriter(c.CRD, "node-b", slog.Default())
	get := func() *v1alpha1.ServiceAnnouncement {
		t.Helper()
		var got v1alpha1.ServiceAnnouncement
		err := c.CRD.Get().Namespace(ns).Resource("serviceannouncements").Name("web.bgp").Do(ctx).Into(&got)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return &got
	}
	flush := func(w interface{ Flush(context.Context) error }) {
		t.Helper()
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	a.Set(announcements("node-a", report("node-a", "node-b")))
	flush(a)
	if got := get(); got == nil || got.Labels[LabelNode] != "node-a" || !slices.Equal(got.Nodes, []string{"node-a", "node-b"}) || got.NodeName != "" {
		t.Fatalf("after node-a's report: %+v, want web.bgp by node-a listing both nodes", got)
	}
	// node-a stops announcing; node-b reports. node-b's write may come first: it takes over.
	b.Set(announcements("node-b", report("node-b")))
	flush(b)
	a.Set(nil)
	flush(a)
	a.Set(nil) // the pass after the relist a conflict asks for
	flush(a)
	if got := get(); got == nil || got.Labels[LabelNode] != "node-b" || !slices.Equal(got.Nodes, []string{"node-b"}) {
		t.Fatalf("after the handover: %+v, want web.bgp by node-b listing node-b", got)
	}
	b.Set(nil)
	flush(b)
	if got := get(); got != nil {
		t.Errorf("after node-b stopped: %+v, want no object", got)
	}
}
