package forward

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// TestRulesDoNotGrowWithServices: the rule count depends on the endpoint counts in use, not on
// the number of Services; each Service adds elements only: 3 frontends, 3 x 5 endpoint slots,
// 2 masquerading frontends, 2 service IPs, and its 0.5 local endpoints (one in ten endpoints is
// on this node) in local-endpoints and hairpin: 23 on average.
func TestRulesDoNotGrowWithServices(t *testing.T) {
	small, large := Render(benchInput(10)).Stats(), Render(benchInput(1000)).Stats()
	if small.Rules != large.Rules || small.Chains != large.Chains || small.Sets != large.Sets {
		t.Errorf("10 Services: %+v; 1000 Services: %+v; want the same rules, chains and sets", small, large)
	}
	perService := float64(large.Elements-small.Elements) / 990
	if perService < 22.9 || perService > 23.1 {
		t.Errorf("%.2f elements per Service, want 23", perService)
	}
}

// TestOneEndpointChangeRendersOneService: with 300 Services rendered, an EndpointSlice that
// changes (a new object, as an informer delivers it) re-renders its Service only; the other
// parts are the same objects, and the Ruleset equals a fresh render of the new input.
func TestOneEndpointChangeRendersOneService(t *testing.T) {
	svcs, epSlices := manyServices(300, 3, 3)
	in := Input{Node: testNode, Services: svcs, EndpointSlices: epSlices, Options: DefaultOptions()}
	r := NewRenderer()
	before := r.Render(in)
	if got := r.LastRendered(); got != 300 {
		t.Fatalf("first render rendered %d Services, want 300", got)
	}
	if again := r.Render(in); again != before {
		t.Errorf("the same input again gave a new Ruleset")
	}
	changed := in
	changed.EndpointSlices = append([]*discoveryv1.EndpointSlice(nil), epSlices...)
	s := epSlices[42].DeepCopy()
	s.Endpoints[1].Addresses = []string{"198.19.255.1"}
	changed.EndpointSlices[42] = s
	after := r.Render(changed)
	if got := r.LastRendered(); got != 1 {
		t.Errorf("one endpoint changed: rendered %d Services, want 1", got)
	}
	for k, p := range after.parts.all {
		if same := before.parts.get(k) == p; same == (k == "default/svc-00042") {
			t.Errorf("part %s: same object as before %v", k, same)
		}
	}
	if got, want := dumpRuleset(t, after), dumpRuleset(t, Render(changed)); got != want {
		t.Errorf("incremental render differs from a fresh one:\n%s", firstDifference(got, want))
	}
	if after.Stats() != Render(changed).Stats() {
		t.Errorf("stats %+v, a fresh render's %+v", after.Stats(), Render(changed).Stats())
	}
}

// TestRendererFollowsClaims: a frontend two Services claim goes to the first; when that one
// changes address or goes, the other takes it in the same render, as a fresh render would.
func TestRendererFollowsClaims(t *testing.T) {
	first := service("a-first", lb, "198.18.0.30", []corev1.ServicePort{tcpPort("http", 80, 30090)}, ingress("203.0.113.30"))
	second := service("b-second", lb, "198.18.0.31", []corev1.ServicePort{tcpPort("http", 80, 30091)}, ingress("203.0.113.30"))
	moved := first.DeepCopy()
	moved.Status.LoadBalancer.Ingress[0].IP = "203.0.113.31"
	epSlices := []*discoveryv1.EndpointSlice{
		slice("a-first", "a-1", http, ep("198.18.1.2", thisNode, ready)),
		slice("b-second", "b-1", http, ep("198.18.1.2", thisNode, ready), ep("198.18.3.2", otherNode, ready)),
	}
	inputs := []Input{
		{Node: testNode, Options: DefaultOptions(), Services: []*corev1.Service{first, second}, EndpointSlices: epSlices},
		{Node: testNode, Options: DefaultOptions(), Services: []*corev1.Service{moved, second}, EndpointSlices: epSlices},
		{Node: testNode, Options: DefaultOptions(), Services: []*corev1.Service{first, second}, EndpointSlices: epSlices},
		{Node: testNode, Options: DefaultOptions(), Services: []*corev1.Service{second}, EndpointSlices: epSlices},
		{Node: testNode, Options: DefaultOptions(), Services: []*corev1.Service{first, second}, EndpointSlices: epSlices},
	}
	r := NewRenderer()
	for i, in := range inputs {
		if got, want := dumpRuleset(t, r.Render(in)), dumpRuleset(t, Render(in)); got != want {
			t.Errorf("step %d: incremental render differs from a fresh one:\n%s", i, firstDifference(got, want))
		}
	}
}

// dumpRuleset is the table a full sync of rs builds.
func dumpRuleset(t *testing.T, rs *Ruleset) string {
	t.Helper()
	fake := knftables.NewFake(TableFamily, TableName)
	if _, err := NewApplier(fake).Sync(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	return fake.Dump()
}
