package plugin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"
)

// TestCommandsAgainstAPIServer runs status, why and pools against Services in every state,
// allocated by the real controller. ServiceAnnouncements and BGPSessionStates are written by
// the test as speakers would: running speakers needs the root lab.
func TestCommandsAgainstAPIServer(t *testing.T) {
	needAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testEnv.clients
	create := func(resource, namespace string, obj any) {
		t.Helper()
		req := c.CRD.Post().Resource(resource).Body(obj)
		if namespace != "" {
			req = req.Namespace(namespace)
		}
		if err := req.Do(ctx).Error(); err != nil {
			t.Fatalf("creating %s: %v", resource, err)
		}
	}
	for _, n := range []string{"shop", "other"} {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"n1", "n2"} {
		if _, err := c.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	web := pool("web", 0, "198.51.100.10-198.51.100.12", "2001:db8:1::10/127")
	no := false
	bgpPool := pool("bgp", 0, "203.0.113.0/30")
	bgpPool.Spec.AutoAssign = &no
	create("ippools", "", &web)
	create("ippools", "", &bgpPool)
	l2 := l2ad("web", "web")
	create("l2advertisements", "", &l2)
	create("bgpadvertisements", "", &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}, Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"bgp"}}})
	create("bgppeers", "", &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64496, MyASN: 64500}})
	// The Services go when the test ends (no namespace controller runs here to delete them with
	// their namespace), so later tests start from the pools alone.
	t.Cleanup(func() {
		list, _ := c.Kube.CoreV1().Services("shop").List(context.Background(), metav1.ListOptions{})
		for _, s := range list.Items {
			_ = c.Kube.CoreV1().Services("shop").Delete(context.Background(), s.Name, metav1.DeleteOptions{})
		}
	})
	startController(t)

	// Services one at a time, each waited for, so the allocation order is fixed.
	svcs := c.Kube.CoreV1().Services("shop")
	add := func(s corev1.Service, wantAllocated bool) *corev1.Service {
		t.Helper()
		s.Annotations["test"] = "1"
		if _, err := svcs.Create(ctx, &s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", s.Name, err)
		}
		var got *corev1.Service
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			cur, err := svcs.Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			got = cur
			cond := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
			return cond != nil && (cond.Status == metav1.ConditionTrue) == wantAllocated, nil
		})
		if err != nil {
			t.Fatalf("%s: no condition (allocated %t): %v; status %+v", s.Name, wantAllocated, err, got.Status)
		}
		return got
	}
	a := add(svc("shop", "a", 0), true)
	add(svc("shop", "dual", 0, dualStack), true)
	add(svc("shop", "shared1", 0, withAnnotation("ironlb.io/sharing-key", "k")), true)
	add(svc("shop", "shared2", 0, withAnnotation("ironlb.io/sharing-key", "k"), withPort(443)), true)
	add(svc("shop", "b", 0, withAnnotation("ironlb.io/pool", "bgp")), true)
	add(svc("shop", "exhausted", 0), false)
	add(svc("shop", "gold", 0, withAnnotation("ironlb.io/pool", "gold")), false)
	add(svc("shop", "held", 0, withAnnotation("ironlb.io/ips", "198.51.100.10")), false)
	add(svc("shop", "clash", 0, withAnnotation("ironlb.io/sharing-key", "k"), withAnnotation("ironlb.io/ips", "198.51.100.12")), false)

	// What the speakers would write: n1 answers ARP for a; n1 and n2 peer with the router "edge",
	// n2's session is down; n1 advertises b.
	create("serviceannouncements", "shop", &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: "a-n1-l2"},
		ServiceName: "a", NodeName: "n1", Mode: v1alpha1.AnnouncementL2, IPs: []string{a.Status.LoadBalancer.Ingress[0].IP}, Interfaces: []string{"eth0"}})
	create("serviceannouncements", "shop", &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: "b.bgp"},
		ServiceName: "b", Nodes: []string{"n1"}, Mode: v1alpha1.AnnouncementBGP, IPs: []string{"203.0.113.0"}, Peers: []string{"edge"}})
	since := metav1.Now()
	create("bgpsessionstates", "", &v1alpha1.BGPSessionState{ObjectMeta: metav1.ObjectMeta{Name: "n1-edge"}, NodeName: "n1", PeerName: "edge",
		PeerAddress: "192.0.2.1", State: v1alpha1.BGPStateEstablished, EstablishedSince: &since})
	create("bgpsessionstates", "", &v1alpha1.BGPSessionState{ObjectMeta: metav1.ObjectMeta{Name: "n2-edge"}, NodeName: "n2", PeerName: "edge",
		PeerAddress: "192.0.2.1", State: v1alpha1.BGPStateActive, LastError: "dial tcp 192.0.2.1:179: connect: connection refused"})
	ready := true
	n1 := "n1"
	if _, err := c.Kube.DiscoveryV1().EndpointSlices("shop").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "b-1", Labels: map[string]string{discoveryv1.LabelServiceName: "b"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.19.1.5"}, NodeName: &n1, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// status: the overview and one Service.
	out := mustRun(t, "status", "-n", "shop")
	t.Log("\n" + out)
	for _, want := range []string{
		"a          198.51.100.10                web   n1(eth0)",
		"b          203.0.113.0                  bgp   n1(BGP:edge)",
		"dual       198.51.100.11,2001:db8:1::10  web",
		"shared1    198.51.100.12",
		"shared2    198.51.100.12",
		"exhausted  <pending>", "False: PoolExhausted", "Warning AllocationFailed",
		"gold       <pending>", "False: NoPool",
		"held       <pending>", "False: RequestedIPUnavailable",
		"clash      <pending>", "False: SharingConflict",
	} {
		if !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("status lacks %q", want)
		}
	}
	out = mustRun(t, "status", "a", "-n", "shop")
	t.Log("\n" + out)
	for _, want := range []string{"198.51.100.10  pool web", "n1  L2  198.51.100.10  interfaces eth0", "Normal  IPAllocated  Assigned 198.51.100.10 from pool web"} {
		if !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("status a lacks %q", want)
		}
	}
	out = mustRun(t, "status", "clash", "-n", "shop")
	for _, want := range []string{"External IPs: <pending>", "Requested:    addresses 198.51.100.12, sharing key k", "Allocated:    False: SharingConflict"} {
		if !strings.Contains(out, want) {
			t.Errorf("status clash lacks %q:\n%s", want, out)
		}
	}
	if out, err := run(t, "status", "a", "-n", "other"); err == nil || !strings.Contains(err.Error(), "no LoadBalancer Service other/a") {
		t.Errorf("status of a missing Service: %v\n%s", err, out)
	}

	// why, for every state.
	for name, wants := range map[string][]string{
		"a":         {"served: 198.51.100.10 allocated and announced"},
		"dual":      {"partly served", "no node announces 198.51.100.11 by L2, although n1, n2 may", "no node announces 2001:db8:1::10 by L2"},
		"b":         {"partly served", "BGP session from node n2 to peer edge (192.0.2.1) is Active: dial tcp 192.0.2.1:179: connect: connection refused"},
		"exhausted": {"pending", `pool "web" has no free IPv4 address`, "add addresses"},
		"gold":      {"pending", `the Service asks for pool "gold", which does not exist (pools: bgp, web)`},
		"held":      {"pending", "the requested address 198.51.100.10 is held by shop/a"},
		"clash":     {"pending", "198.51.100.12 cannot be shared: port 80/TCP is used by shop/shared1"},
	} {
		out := mustRun(t, "why", name, "-n", "shop")
		t.Log("\n" + out)
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("why %s lacks %q", name, w)
			}
		}
	}
	var ex Explanation
	if err := yaml.Unmarshal([]byte(mustRun(t, "why", "held", "-n", "shop", "-o", "yaml")), &ex); err != nil || ex.Verdict != VerdictPending || len(ex.Findings) == 0 {
		t.Errorf("why -o yaml: %v %+v", err, ex)
	}

	// pools, as JSON.
	var pools []PoolUsage
	if err := json.Unmarshal([]byte(mustRun(t, "pools", "-o", "json")), &pools); err != nil {
		t.Fatal(err)
	}
	byName := map[string]PoolUsage{}
	for _, p := range pools {
		byName[p.Name] = p
	}
	if w := byName["web"]; len(w.Families) != 2 || w.Families[0] != (FamilyUsage{"IPv4", "3", "3", "0"}) || w.Families[1] != (FamilyUsage{"IPv6", "2", "1", "1"}) {
		t.Errorf("web: %+v", w)
	}
	if h := byName["web"].Holders; len(h) != 4 || h[2].IP != "198.51.100.12" || strings.Join(h[2].Services, ",") != "shop/shared1,shop/shared2" {
		t.Errorf("web holders: %+v", h)
	}
	out = mustRun(t, "pools")
	t.Log("\n" + out)
	if !strings.Contains(squeeze(out), squeeze("bgp  IPv4  4  1  3  false  Ready")) {
		t.Errorf("pools text lacks the bgp line")
	}
	if out, err := run(t, "pools", "-o", "xml"); err == nil || !strings.Contains(err.Error(), `--output "xml"`) {
		t.Errorf("-o xml: %v %s", err, out)
	}
}

// squeeze collapses runs of spaces, so checks do not depend on column widths.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }
