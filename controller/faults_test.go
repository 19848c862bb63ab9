package controller

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The tests in this file each reproduce a fault of issue 14 (keep serving through outages,
// restarts and odd configurations).

// A hot standby whose informer cache is behind when it wins the Lease (here: it still holds a
// Service as created, before the leader wrote its address) restores the allocator from the API
// server, not from that cache: the Service keeps its address, and no other Service gets it.
func TestTakeoverWithAStaleCacheMovesNoIP(t *testing.T) {
	h := newBareHarness(t)
	h.pool("a", []string{"198.51.100.220-198.51.100.229"}, nil)
	a := startController(t, testConfig("a-"+h.ns))
	h.svc("gone", nil)
	h.waitStatus(h.ns, "gone", metav1.ConditionTrue, ReasonAllocated, "198.51.100.220")
	created := h.svc("kept", nil)
	h.waitStatus(h.ns, "kept", metav1.ConditionTrue, ReasonAllocated, "198.51.100.221")
	if err := testEnv.kube.CoreV1().Services(h.ns).Delete(h.ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// The standby syncs its caches, then its cache goes stale: "kept" as created, without
	// the status the leader wrote (a watch event not yet delivered).
	b := startController(t, testConfig("b-"+h.ns))
	defer b.stop(t)
	svcInf := b.c.factory.Core().V1().Services().Informer()
	h.eventually("the standby's caches synced", func() (bool, string) {
		return b.c.ready.Load() && svcInf.HasSynced(), ""
	})
	if err := svcInf.GetIndexer().Update(created); err != nil {
		t.Fatal(err)
	}
	a.stop(t) // releases the Lease: the standby takes over
	h.eventually("the standby leads", func() (bool, string) {
		return testutil.ToFloat64(b.c.metrics.leader) == 1, ""
	})

	// The cache catches up (any change to the Service brings its current version); then a
	// new Service asks for an address.
	h.updateSvc(h.ns, "kept", func(s *corev1.Service) { s.Labels = map[string]string{"touched": "yes"} })
	h.svc("new", nil)
	h.eventually("new allocated", func() (bool, string) {
		s := h.getSvc(h.ns, "new")
		return len(s.Status.LoadBalancer.Ingress) == 1, describe(s)
	})
	// One worker, one queue: "kept" (queued by the touch) was reconciled before "new".
	if s := h.getSvc(h.ns, "kept"); len(s.Status.LoadBalancer.Ingress) != 1 || s.Status.LoadBalancer.Ingress[0].IP != "198.51.100.221" {
		t.Errorf("kept after the takeover: %s, want 198.51.100.221 kept", describe(s))
	}
	if s := h.getSvc(h.ns, "new"); s.Status.LoadBalancer.Ingress[0].IP == "198.51.100.221" {
		t.Errorf("new: %s, the address of kept", describe(s))
	}
}
