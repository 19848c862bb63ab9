package forward

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// TestScaleDownAcrossSlices follows one Service whose endpoints kube-controller-manager lists in
// three EndpointSlices through a scale-down from 25 pods to 5, each slice written at its own time
// as the controller does, rendered and applied one change at a time as the speaker does (one
// Renderer, incremental transactions): after every change, new connections to the LoadBalancer
// IP go to the ready endpoints of all slices together, to the serving terminating ones only
// when no slice has a ready one, and are refused only when no slice has either.
func TestScaleDownAcrossSlices(t *testing.T) {
	const lbIP, key = "203.0.113.50", "default/web"
	svc := service("web", lb, "198.18.0.50", []corev1.ServicePort{tcpPort("http", 80, 30050)}, ingress(lbIP))
	addr := func(i int) string { return fmt.Sprintf("198.18.3.%d", i) }
	// eps lists endpoints from..to (inclusive) in state st, on the other node.
	eps := func(from, to int, st epState) []discoveryv1.Endpoint {
		var out []discoveryv1.Endpoint
		for i := from; i <= to; i++ {
			out = append(out, ep(addr(i), otherNode, st))
		}
		return out
	}
	cat := func(parts ...[]discoveryv1.Endpoint) []discoveryv1.Endpoint { return slices.Concat(parts...) }
	sl := func(name string, e []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return slice("web", name, http, e...)
	}
	// Pods 1-10 in slice a, 11-20 in b, 21-25 in c; 1, 2, 11, 12 and 21 stay.
	steps := []struct {
		what   string
		slices map[string]*discoveryv1.EndpointSlice // the slices that change; nil deletes one
		want   []int                                 // the endpoints new connections go to; none: refused
	}{
		{"25 ready pods in 3 slices", map[string]*discoveryv1.EndpointSlice{
			"a": sl("a", eps(1, 10, ready)), "b": sl("b", eps(11, 20, ready)), "c": sl("c", eps(21, 25, ready)),
		}, span(1, 25)},
		{"scaled to 5: slice a's 8 going pods terminate first (still serving)", map[string]*discoveryv1.EndpointSlice{
			"a": sl("a", cat(eps(1, 2, ready), eps(3, 10, terminatingServing))),
		}, slices.Concat(span(1, 2), span(11, 25))},
		{"then slice b's", map[string]*discoveryv1.EndpointSlice{
			"b": sl("b", cat(eps(11, 12, ready), eps(13, 20, terminatingServing))),
		}, slices.Concat(span(1, 2), span(11, 12), span(21, 25))},
		{"then slice c's", map[string]*discoveryv1.EndpointSlice{
			"c": sl("c", cat(eps(21, 21, ready), eps(22, 25, terminatingServing))),
		}, []int{1, 2, 11, 12, 21}},
		{"slice a's going pods stop serving", map[string]*discoveryv1.EndpointSlice{
			"a": sl("a", cat(eps(1, 2, ready), eps(3, 10, terminatingNotServing))),
		}, []int{1, 2, 11, 12, 21}},
		{"slice a's going pods are gone", map[string]*discoveryv1.EndpointSlice{
			"a": sl("a", eps(1, 2, ready)),
		}, []int{1, 2, 11, 12, 21}},
		{"slice b's too", map[string]*discoveryv1.EndpointSlice{
			"b": sl("b", eps(11, 12, ready)),
		}, []int{1, 2, 11, 12, 21}},
		{"a pod listed in two slices at once, ready in one and terminating in the other, counts once as ready", map[string]*discoveryv1.EndpointSlice{
			"c": sl("c", cat(eps(21, 21, ready), eps(1, 1, terminatingServing))),
		}, []int{1, 2, 11, 12, 21}},
		{"slice c gone before its pod reappears elsewhere", map[string]*discoveryv1.EndpointSlice{
			"c": nil,
		}, []int{1, 2, 11, 12}},
		{"the remaining pods unready, not terminating: refused", map[string]*discoveryv1.EndpointSlice{
			"a": sl("a", eps(1, 2, notReady)), "b": sl("b", eps(11, 12, notReady)),
		}, nil},
		{"no ready endpoint in any slice: the serving terminating one of another slice", map[string]*discoveryv1.EndpointSlice{
			"c": sl("c", eps(21, 21, terminatingServing)),
		}, []int{21}},
		{"a ready one in one slice wins over the terminating ones of the others", map[string]*discoveryv1.EndpointSlice{
			"b": sl("b", cat(eps(11, 11, ready), eps(12, 12, notReady))),
		}, []int{11}},
		{"every slice emptied", map[string]*discoveryv1.EndpointSlice{
			"a": sl("a", nil), "b": sl("b", nil), "c": nil,
		}, nil},
	}

	fake := knftables.NewFake(TableFamily, TableName)
	applier, r := NewApplier(fake), NewRenderer()
	r.SetNode(testNode, DefaultOptions())
	current := map[string]*discoveryv1.EndpointSlice{}
	for i, step := range steps {
		for name, s := range step.slices {
			if s == nil {
				delete(current, name)
			} else {
				current[name] = s
			}
		}
		var all []*discoveryv1.EndpointSlice
		for _, s := range current {
			all = append(all, s)
		}
		r.SetService(key, svc, all)
		rs := r.Ruleset()
		if _, err := applier.Sync(context.Background(), rs); err != nil {
			t.Fatalf("step %d (%s): Sync: %v", i, step.what, err)
		}
		want := "reject"
		if len(step.want) > 0 {
			var dests []string
			for _, e := range step.want {
				dests = append(dests, addr(e)+":8080(masq)")
			}
			slices.Sort(dests)
			want = "dnat " + strings.Join(dests, " ")
		}
		tr := &tracer{t: t, table: fake.Table}
		if got := tr.trace(tracePacket{"198.51.100.10", lbIP, "tcp", 80}); got != want {
			t.Errorf("step %d (%s): new connections to %s: got %s, want %s", i, step.what, lbIP, got, want)
		}
		fresh := Render(Input{Node: testNode, Services: []*corev1.Service{svc}, EndpointSlices: all, Options: DefaultOptions()})
		if got, want := dumpRuleset(t, rs), dumpRuleset(t, fresh); got != want {
			t.Errorf("step %d (%s): incremental render differs from a fresh one:\n%s", i, step.what, firstDifference(got, want))
		}
	}
}

// span returns from..to.
func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
