package forward

import (
	"context"
	"fmt"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// The benchmarks that load rules need root and run in their own namespace. Figures and the
// commands that produce them are in BENCHMARKS.md ("Forwarding").
//
//	go test -run '^$' -bench . -benchtime 1x ./forward/

// benchInput is n LoadBalancer Services with 5 endpoints each on a 10-node cluster: every
// Service has a ClusterIP, an ingress IP and a NodePort, so 3 frontends and 15 endpoint
// elements, and one endpoint in ten is on this node.
func benchInput(n int) Input {
	svcs, slices := manyServices(n, 5, 10)
	return Input{Node: testNode, Services: svcs, EndpointSlices: slices, Options: DefaultOptions()}
}

// BenchmarkRender renders the table for 1,000 and 10,000 Services: pure CPU, no nft.
func BenchmarkRender(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		in := benchInput(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var rs *Ruleset
			for b.Loop() {
				rs = Render(in)
			}
			st := rs.Stats()
			b.ReportMetric(float64(st.Rules), "rules")
			b.ReportMetric(float64(st.Elements), "elements")
		})
	}
}

// BenchmarkFullSync10k renders 10,000 Services and replaces the table with them in one
// transaction, as a speaker does at start (the table from the previous iteration is there, as
// after a restart). It reports render and apply time separately.
func BenchmarkFullSync10k(b *testing.B) {
	ns := newNamespace(b, "bench-full")
	in := benchInput(10000)
	var render, apply time.Duration
	for b.Loop() {
		start := time.Now()
		rs := Render(in)
		render += time.Since(start)
		start = time.Now()
		a := benchApplier(b, ns)
		var err error
		inNamespace(b, ns, func() { _, err = a.Sync(context.Background(), rs) })
		if err != nil {
			b.Fatal(err)
		}
		apply += time.Since(start)
	}
	b.ReportMetric(render.Seconds()/float64(b.N), "render-s")
	b.ReportMetric(apply.Seconds()/float64(b.N), "apply-s")
}

// BenchmarkOneServiceChange10k: with 10,000 Services loaded, one Service gains or loses an
// endpoint, alternately (a new EndpointSlice object each time, as an informer delivers it);
// each iteration is what the speaker does for it: the Renderer renders that Service and the
// Applier sends its delta (diff, transaction, nft run).
func BenchmarkOneServiceChange10k(b *testing.B) {
	ns := newNamespace(b, "bench-change")
	base := benchInput(10000)
	r := NewRenderer()
	a := benchApplier(b, ns)
	var err error
	inNamespace(b, ns, func() { _, err = a.Sync(context.Background(), r.Render(base)) })
	if err != nil {
		b.Fatal(err)
	}
	svc := base.Services[4242]
	key := svc.Namespace + "/" + svc.Name
	versions := []*discoveryv1.EndpointSlice{base.EndpointSlices[4242].DeepCopy(), base.EndpointSlices[4242].DeepCopy()}
	versions[1].Endpoints = append(versions[1].Endpoints, ep("198.19.255.1", otherNode, ready))
	ops, i := 0, 0
	for b.Loop() {
		i++
		r.SetService(key, svc, []*discoveryv1.EndpointSlice{versions[i%2].DeepCopy()})
		var res SyncResult
		inNamespace(b, ns, func() { res, err = a.Sync(context.Background(), r.Ruleset()) })
		if err != nil || res.Full || r.LastRendered() != 1 {
			b.Fatalf("sync %d: %+v, %v, %d Services rendered", i, res, err, r.LastRendered())
		}
		ops += res.Operations
	}
	b.ReportMetric(float64(ops)/float64(b.N), "ops")
}

func benchApplier(b *testing.B, ns string) *Applier {
	var nft knftables.Interface
	inNamespace(b, ns, func() {
		var err error
		if nft, err = NewInterface(); err != nil {
			b.Fatal(err)
		}
	})
	return NewApplier(nft)
}
