package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
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

// A pool that contains a node's address: the controller never gives it out (the lowest free
// address skips it, a request for it fails with AddressReserved naming the node), and the
// pool's status says which of its addresses are reserved and why.
func TestNodeAddressesAreNeverAllocated(t *testing.T) {
	h := newHarness(t)
	pool := h.pool("a", []string{"198.51.100.232-198.51.100.235"}, nil)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.ns + "-node"}}
	created, err := testEnv.kube.CoreV1().Nodes().Create(h.ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = testEnv.kube.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{})
	})
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.232"}}
	if _, err := testEnv.kube.CoreV1().Nodes().UpdateStatus(h.ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("the pool reports the node's address", func() (bool, string) {
		c := meta.FindStatusCondition(h.getPool(pool).Status.Conditions, v1alpha1.IPPoolAddressesReserved)
		return c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "198.51.100.232") && strings.Contains(c.Message, node.Name), fmt.Sprintf("%+v", c)
	})
	h.svc("first", nil)
	h.waitStatus(h.ns, "first", metav1.ConditionTrue, ReasonAllocated, "198.51.100.233")
	h.svc("asks", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.232" })
	s := h.waitStatus(h.ns, "asks", metav1.ConditionFalse, string(allocator.AddressReserved))
	if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ServiceConditionIPAllocated); !strings.Contains(c.Message, node.Name) {
		t.Errorf("condition %q does not name the node", c.Message)
	}
	h.eventually("pool counts", func() (bool, string) {
		st := h.getPool(pool).Status
		return st.IPv4 != nil && st.IPv4.Available == "2", fmt.Sprintf("%+v", st.IPv4)
	})

	// The node goes: its address can be given out.
	if err := testEnv.kube.CoreV1().Nodes().Delete(h.ctx, node.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(h.ns, "asks", metav1.ConditionTrue, ReasonAllocated, "198.51.100.232")
	h.eventually("the pool no longer reports a reserved address", func() (bool, string) {
		c := meta.FindStatusCondition(h.getPool(pool).Status.Conditions, v1alpha1.IPPoolAddressesReserved)
		return c == nil, fmt.Sprintf("%+v", c)
	})
}

// A Service keeps an address its pool no longer contains; the pool's status lists it as
// retained (so the speakers announce it as the pool's), also after a controller restart, and
// the Service's condition says it is still announced.
func TestShrunkPoolRetainsItsAddressesAcrossRestarts(t *testing.T) {
	h := newBareHarness(t)
	pool := h.pool("a", []string{"198.51.100.244-198.51.100.247"}, nil)
	a := startController(t, testConfig("a-"+h.ns))
	h.svc("keeper", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.247" })
	h.waitStatus(h.ns, "keeper", metav1.ConditionTrue, ReasonAllocated, "198.51.100.247")
	h.waitPoolSettled(pool)
	h.updatePool(pool, func(p *v1alpha1.IPPool) { p.Spec.Addresses = []string{"198.51.100.244-198.51.100.246"} })
	check := func(when string) {
		t.Helper()
		s := h.waitStatus(h.ns, "keeper", metav1.ConditionTrue, ReasonOutsidePool, "198.51.100.247")
		if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ServiceConditionIPAllocated); !strings.Contains(c.Message, pool) || !strings.Contains(c.Message, "announced") {
			t.Errorf("%s: condition %q, want it to name pool %s and say the address is announced", when, c.Message, pool)
		}
		h.eventually(when+": the pool retains the address", func() (bool, string) {
			st := h.getPool(pool).Status
			return slices.Equal(st.RetainedAddresses, []string{"198.51.100.247"}), fmt.Sprintf("%v", st.RetainedAddresses)
		})
	}
	check("after the shrink")
	a.stop(t)

	b := startController(t, testConfig("b-"+h.ns))
	defer b.stop(t)
	// The new leader has written the pool's status once the marker is counted in it.
	h.svc("marker", nil)
	h.waitStatus(h.ns, "marker", metav1.ConditionTrue, ReasonAllocated, "198.51.100.244")
	h.eventually("the marker counted", func() (bool, string) {
		st := h.getPool(pool).Status
		return st.IPv4 != nil && st.IPv4.Assigned == "1", fmt.Sprintf("%+v", st.IPv4)
	})
	check("after a restart")
	if got := h.getPool(pool).Status.RetainedAddresses; !slices.Equal(got, []string{"198.51.100.247"}) {
		t.Errorf("after a restart the pool retains %v, want [198.51.100.247]", got)
	}
}
