package controller

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAllocatesTheLowestFreeAddress(t *testing.T) {
	h := newHarness(t)
	pool := h.pool("a", []string{"198.51.100.10-198.51.100.20"}, nil)
	h.svc("one", nil)
	s := h.waitStatus(h.ns, "one", metav1.ConditionTrue, ReasonAllocated, "198.51.100.10")
	if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ServiceConditionIPAllocated); !strings.Contains(c.Message, pool) {
		t.Errorf("condition message %q does not name the pool %s", c.Message, pool)
	}
	h.waitEvent(h.ns, "one", "IPAllocated")
	h.svc("two", nil)
	h.waitStatus(h.ns, "two", metav1.ConditionTrue, ReasonAllocated, "198.51.100.11")
	h.eventually("pool status counts", func() (bool, string) {
		st := h.getPool(pool).Status
		return st.IPv4 != nil && *st.IPv4 == v1alpha1.IPPoolAddressCounts{Total: "11", Assigned: "2", Available: "9"} &&
			meta.IsStatusConditionTrue(st.Conditions, v1alpha1.IPPoolReady), fmt.Sprintf("%+v", st)
	})
}

func TestRequestedAddresses(t *testing.T) {
	h := newHarness(t)
	h.pool("a", []string{"198.51.100.0/24", "2001:db8:1::/64"}, nil)
	h.svc("by-spec", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.77" })
	h.waitStatus(h.ns, "by-spec", metav1.ConditionTrue, ReasonAllocated, "198.51.100.77")
	h.svc("by-annotation", func(s *corev1.Service) {
		s.Annotations = map[string]string{v1alpha1.AnnotationIPs: "198.51.100.78, 2001:db8:1::78"}
		s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyPreferDualStack)
	})
	h.waitStatus(h.ns, "by-annotation", metav1.ConditionTrue, ReasonAllocated, "198.51.100.78", "2001:db8:1::78")
	h.svc("taken", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.77" })
	h.waitStatus(h.ns, "taken", metav1.ConditionFalse, string("RequestedIPUnavailable"))
	h.waitEvent(h.ns, "taken", "AllocationFailed")
	h.svc("outside", func(s *corev1.Service) { s.Annotations = map[string]string{v1alpha1.AnnotationIPs: "203.0.113.9"} })
	h.waitStatus(h.ns, "outside", metav1.ConditionFalse, "RequestedIPOutsidePools")
}

func TestRequestedPoolAndMetalLBAnnotations(t *testing.T) {
	h := newHarness(t)
	h.pool("auto", []string{"198.51.100.0/28"}, nil)
	manual := h.pool("manual", []string{"203.0.113.0/28"}, func(p *v1alpha1.IPPool) { p.Spec.AutoAssign = ptr(false) })
	h.svc("plain", nil)
	h.waitStatus(h.ns, "plain", metav1.ConditionTrue, ReasonAllocated, "198.51.100.0")
	h.svc("ours", func(s *corev1.Service) { s.Annotations = map[string]string{v1alpha1.AnnotationPool: manual} })
	h.waitStatus(h.ns, "ours", metav1.ConditionTrue, ReasonAllocated, "203.0.113.0")
	h.svc("metallb-pool", func(s *corev1.Service) { s.Annotations = map[string]string{"metallb.universe.tf/address-pool": manual} })
	h.waitStatus(h.ns, "metallb-pool", metav1.ConditionTrue, ReasonAllocated, "203.0.113.1")
	h.svc("metallb-ips", func(s *corev1.Service) {
		s.Annotations = map[string]string{"metallb.io/loadBalancerIPs": "203.0.113.9"}
	})
	h.waitStatus(h.ns, "metallb-ips", metav1.ConditionTrue, ReasonAllocated, "203.0.113.9")
	// MetalLB's sharing annotation shares like ours.
	for i, port := range []int32{80, 443} {
		h.svc(fmt.Sprintf("metallb-shared-%d", i), func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "203.0.113.10"}
			s.Spec.Ports[0].Port = port
		})
		h.waitStatus(h.ns, fmt.Sprintf("metallb-shared-%d", i), metav1.ConditionTrue, ReasonAllocated, "203.0.113.10")
	}
	h.svc("unknown-pool", func(s *corev1.Service) { s.Annotations = map[string]string{v1alpha1.AnnotationPool: "no-such-pool"} })
	h.waitStatus(h.ns, "unknown-pool", metav1.ConditionFalse, "NoPool")
}

func TestSharing(t *testing.T) {
	h := newHarness(t)
	h.pool("a", []string{"198.51.100.30-198.51.100.39"}, nil)
	shared := func(port int32, local bool, app string) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Annotations = map[string]string{v1alpha1.AnnotationSharingKey: "web"}
			s.Spec.Ports[0].Port = port
			s.Spec.Selector = map[string]string{"app": app}
			if local {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}
		}
	}
	h.svc("http", shared(80, false, "web"))
	h.waitStatus(h.ns, "http", metav1.ConditionTrue, ReasonAllocated, "198.51.100.30")
	h.svc("https", shared(443, false, "other"))
	h.waitStatus(h.ns, "https", metav1.ConditionTrue, ReasonAllocated, "198.51.100.30")
	// Same key, same port: not on the shared address; a fresh one instead.
	h.svc("http-again", shared(80, false, "web"))
	h.waitStatus(h.ns, "http-again", metav1.ConditionTrue, ReasonAllocated, "198.51.100.31")
	// Same key, but asking for the shared address with an overlapping port: refused.
	h.svc("clash", func(s *corev1.Service) {
		shared(443, false, "web")(s)
		s.Spec.LoadBalancerIP = "198.51.100.30"
	})
	h.waitStatus(h.ns, "clash", metav1.ConditionFalse, "SharingConflict")
	// Local policy never shares with Cluster.
	h.svc("local", func(s *corev1.Service) {
		shared(8443, true, "web")(s)
		s.Spec.LoadBalancerIP = "198.51.100.30"
	})
	h.waitStatus(h.ns, "local", metav1.ConditionFalse, "SharingConflict")
	// No key: never shares.
	h.svc("no-key", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.30"; s.Spec.Ports[0].Port = 9000 })
	h.waitStatus(h.ns, "no-key", metav1.ConditionFalse, "RequestedIPUnavailable")
}

func TestDualStack(t *testing.T) {
	h := newHarness(t)
	h.pool("v4", []string{"198.51.100.40/31"}, nil)
	h.pool("v6", []string{"2001:db8:2::/64"}, nil)
	dual := func(policy corev1.IPFamilyPolicy) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptr(policy)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		}
	}
	h.svc("prefer", dual(corev1.IPFamilyPolicyPreferDualStack))
	h.waitStatus(h.ns, "prefer", metav1.ConditionTrue, ReasonAllocated, "198.51.100.40", "2001:db8:2::")
	h.svc("v6-first", func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	})
	h.waitStatus(h.ns, "v6-first", metav1.ConditionTrue, ReasonAllocated, "2001:db8:2::1", "198.51.100.41")
	// IPv4 is exhausted now: RequireDualStack fails and takes nothing; PreferDualStack gets IPv6.
	h.svc("require", dual(corev1.IPFamilyPolicyRequireDualStack))
	h.waitStatus(h.ns, "require", metav1.ConditionFalse, "PoolExhausted")
	h.svc("prefer-2", dual(corev1.IPFamilyPolicyPreferDualStack))
	h.waitStatus(h.ns, "prefer-2", metav1.ConditionTrue, ReasonAllocated, "2001:db8:2::2")
	h.svc("v6-single", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
	h.waitStatus(h.ns, "v6-single", metav1.ConditionTrue, ReasonAllocated, "2001:db8:2::3")
	// The pending RequireDualStack Service gets both families once an IPv4 address frees up.
	if err := testEnv.kube.CoreV1().Services(h.ns).Delete(h.ctx, "prefer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(h.ns, "require", metav1.ConditionTrue, ReasonAllocated, "198.51.100.40", "2001:db8:2::")
}

func TestRestrictedPools(t *testing.T) {
	h := newHarness(t)
	h.pool("open", []string{"198.51.100.50/32"}, nil)
	byNS := h.pool("by-ns", []string{"198.51.100.60/32"}, func(p *v1alpha1.IPPool) {
		p.Spec.Allocation = &v1alpha1.IPPoolAllocation{Namespaces: []string{h.ns}, Priority: 10}
	})
	h.pool("by-ns-label", []string{"198.51.100.70/32"}, func(p *v1alpha1.IPPool) {
		p.Spec.Allocation = &v1alpha1.IPPoolAllocation{Priority: 5, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}}
	})
	h.pool("by-svc-label", []string{"198.51.100.80/32"}, func(p *v1alpha1.IPPool) {
		p.Spec.Allocation = &v1alpha1.IPPoolAllocation{ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}}
	})
	blue := h.ns + "-blue"
	h.namespace(blue, map[string]string{"team": "blue"})
	t.Cleanup(func() {
		_ = testEnv.kube.CoreV1().Services(blue).Delete(h.ctx, "in-blue", metav1.DeleteOptions{})
	})

	// A restricted pool that matches wins over unrestricted ones; among restricted ones the
	// lower priority wins (by-svc-label has priority 0, by-ns has 10).
	h.svc("gold", func(s *corev1.Service) { s.Labels = map[string]string{"tier": "gold"} })
	h.waitStatus(h.ns, "gold", metav1.ConditionTrue, ReasonAllocated, "198.51.100.80")
	h.svc("in-ns", nil)
	h.waitStatus(h.ns, "in-ns", metav1.ConditionTrue, ReasonAllocated, "198.51.100.60")
	h.svc("in-blue", func(s *corev1.Service) { s.Namespace = blue })
	h.waitStatus(blue, "in-blue", metav1.ConditionTrue, ReasonAllocated, "198.51.100.70")
	// Only the open pool is left for this namespace's plain Services.
	h.svc("plain", nil)
	h.waitStatus(h.ns, "plain", metav1.ConditionTrue, ReasonAllocated, "198.51.100.50")
	// Naming a restricted pool does not get around its restriction.
	h.svc("sneaky", func(s *corev1.Service) {
		s.Namespace = blue
		s.Annotations = map[string]string{v1alpha1.AnnotationPool: byNS}
	})
	h.waitStatus(blue, "sneaky", metav1.ConditionFalse, "NoPool")
	t.Cleanup(func() { _ = testEnv.kube.CoreV1().Services(blue).Delete(h.ctx, "sneaky", metav1.DeleteOptions{}) })
}

func TestExhaustionThenRelease(t *testing.T) {
	h := newHarness(t)
	h.pool("tiny", []string{"198.51.100.90/32"}, nil)
	h.svc("first", nil)
	h.waitStatus(h.ns, "first", metav1.ConditionTrue, ReasonAllocated, "198.51.100.90")
	h.svc("second", nil)
	h.waitStatus(h.ns, "second", metav1.ConditionFalse, "PoolExhausted")
	ev := h.waitEvent(h.ns, "second", "AllocationFailed")
	if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "PoolExhausted") {
		t.Errorf("event %s %q, want a Warning naming PoolExhausted", ev.Type, ev.Message)
	}
	if err := testEnv.kube.CoreV1().Services(h.ns).Delete(h.ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(h.ns, "second", metav1.ConditionTrue, ReasonAllocated, "198.51.100.90")
	// Events on transitions only: one failure event, however often the Service was retried.
	if n := h.countEvents(h.ns, "second", "AllocationFailed"); n != 1 {
		t.Errorf("%d AllocationFailed events, want 1", n)
	}
}

func TestTypeAndClassChangesRelease(t *testing.T) {
	h := newHarness(t)
	h.pool("one", []string{"198.51.100.100/32"}, nil)
	h.svc("lb", nil)
	h.waitStatus(h.ns, "lb", metav1.ConditionTrue, ReasonAllocated, "198.51.100.100")
	h.svc("waiting", nil)
	h.waitStatus(h.ns, "waiting", metav1.ConditionFalse, "PoolExhausted")

	// LoadBalancer -> ClusterIP: the address is released and what ironlb wrote is cleared.
	h.updateSvc(h.ns, "lb", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
		s.Spec.AllocateLoadBalancerNodePorts = nil
	})
	h.eventually("lb cleared", func() (bool, string) {
		s := h.getSvc(h.ns, "lb")
		return len(s.Status.LoadBalancer.Ingress) == 0 && !hasOurCondition(s), describe(s)
	})
	if ev := h.waitEvent(h.ns, "lb", "IPReleased"); !strings.Contains(ev.Message, "198.51.100.100") {
		t.Errorf("IPReleased event %q does not name the released address 198.51.100.100", ev.Message)
	}
	h.waitStatus(h.ns, "waiting", metav1.ConditionTrue, ReasonAllocated, "198.51.100.100")

	// Another class is not ours: never touched. Back to our class: allocated. The class is
	// immutable on a LoadBalancer, so the change goes through ClusterIP as a user's would.
	h.svc("foreign", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("example.com/other") })
	h.updateSvc(h.ns, "waiting", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
		s.Spec.AllocateLoadBalancerNodePorts = nil
		s.Spec.LoadBalancerClass = nil
	})
	h.updateSvc(h.ns, "waiting", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.LoadBalancerClass = ptr("example.com/other")
	})
	h.eventually("waiting released after its class changed", func() (bool, string) {
		s := h.getSvc(h.ns, "waiting")
		return len(s.Status.LoadBalancer.Ingress) == 0 && !hasOurCondition(s), describe(s)
	})
	h.svc("ours-by-class", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr(DefaultConfig().Class.Name) })
	h.waitStatus(h.ns, "ours-by-class", metav1.ConditionTrue, ReasonAllocated, "198.51.100.100")
	if s := h.getSvc(h.ns, "foreign"); len(s.Status.LoadBalancer.Ingress) != 0 || len(s.Status.Conditions) != 0 {
		t.Errorf("a Service of another class was touched: %s", describe(s))
	}
}

func TestPoolDeletionWaitsForItsServices(t *testing.T) {
	h := newHarness(t)
	pool := h.pool("doomed", []string{"198.51.100.110/31"}, nil)
	h.svc("holder", nil)
	h.waitStatus(h.ns, "holder", metav1.ConditionTrue, ReasonAllocated, "198.51.100.110")
	h.eventually("finalizer on the pool", func() (bool, string) {
		p := h.getPool(pool)
		return len(p.Finalizers) == 1 && p.Finalizers[0] == PoolFinalizer, fmt.Sprint(p.Finalizers)
	})
	if err := h.crd.Delete().Resource("ippools").Name(pool).Do(h.ctx).Error(); err != nil {
		t.Fatal(err)
	}
	h.eventually("deletion blocked and said so", func() (bool, string) {
		c := meta.FindStatusCondition(h.getPool(pool).Status.Conditions, v1alpha1.IPPoolReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == reasonDeleting && strings.Contains(c.Message, "holder"), fmt.Sprintf("%+v", c)
	})
	h.waitEvent("", pool, "DeletionBlocked")
	// The holder keeps its address, flagged; a new Service cannot draw from a dying pool.
	h.waitStatus(h.ns, "holder", metav1.ConditionTrue, ReasonOutsidePool, "198.51.100.110")
	h.svc("newcomer", nil)
	h.waitStatus(h.ns, "newcomer", metav1.ConditionFalse, "NoPool")
	if err := testEnv.kube.CoreV1().Services(h.ns).Delete(h.ctx, "holder", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("pool gone", func() (bool, string) {
		err := h.crd.Get().Resource("ippools").Name(pool).Do(h.ctx).Error()
		return err != nil && strings.Contains(err.Error(), "not found"), fmt.Sprint(err)
	})
}

func TestPoolShrinkKeepsAddressesInUse(t *testing.T) {
	h := newHarness(t)
	pool := h.pool("shrinks", []string{"198.51.100.120-198.51.100.123"}, nil)
	for _, name := range []string{"a", "b"} {
		h.svc(name, nil)
	}
	h.waitStatus(h.ns, "a", metav1.ConditionTrue, ReasonAllocated, "198.51.100.120")
	h.waitStatus(h.ns, "b", metav1.ConditionTrue, ReasonAllocated, "198.51.100.121")
	h.updatePool(pool, func(p *v1alpha1.IPPool) { p.Spec.Addresses = []string{"198.51.100.121-198.51.100.123"} })
	h.eventually("pool flags the address in use", func() (bool, string) {
		c := meta.FindStatusCondition(h.getPool(pool).Status.Conditions, v1alpha1.IPPoolAddressesInUse)
		return c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "198.51.100.120"), fmt.Sprintf("%+v", c)
	})
	h.waitEvent("", pool, v1alpha1.IPPoolAddressesInUse)
	h.waitStatus(h.ns, "a", metav1.ConditionTrue, ReasonOutsidePool, "198.51.100.120")
	ev := h.waitEvent(h.ns, "a", ReasonOutsidePool)
	if ev.Type != corev1.EventTypeWarning {
		t.Errorf("event type %s, want Warning", ev.Type)
	}
	h.waitStatus(h.ns, "b", metav1.ConditionTrue, ReasonAllocated, "198.51.100.121")
	// The removed address is not handed out again.
	h.svc("c", nil)
	h.waitStatus(h.ns, "c", metav1.ConditionTrue, ReasonAllocated, "198.51.100.122")
}

func TestOverlappingPoolsAreFlagged(t *testing.T) {
	h := newHarness(t)
	older := h.pool("a-older", []string{"198.51.100.128/29"}, nil)
	newer := h.pool("b-newer", []string{"198.51.100.132-198.51.100.140"}, nil)
	h.eventually("newer flagged", func() (bool, string) {
		st := h.getPool(newer).Status
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.IPPoolOverlap)
		return c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, older) &&
			meta.IsStatusConditionFalse(st.Conditions, v1alpha1.IPPoolReady), fmt.Sprintf("%+v", st.Conditions)
	})
	h.waitEvent("", newer, v1alpha1.IPPoolOverlap)
	if meta.IsStatusConditionTrue(h.getPool(older).Status.Conditions, v1alpha1.IPPoolOverlap) {
		t.Error("the older pool is flagged too; it keeps its addresses")
	}
	h.svc("s", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.138" })
	h.waitStatus(h.ns, "s", metav1.ConditionFalse, "RequestedIPUnavailable")
}

func TestInvalidAnnotationChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.pool("a", []string{"198.51.100.150-198.51.100.153"}, nil)
	h.svc("s", nil)
	h.waitStatus(h.ns, "s", metav1.ConditionTrue, ReasonAllocated, "198.51.100.150")
	h.updateSvc(h.ns, "s", func(s *corev1.Service) {
		s.Annotations = map[string]string{v1alpha1.AnnotationIPs: "198.51.100.999"}
	})
	s := h.waitStatus(h.ns, "s", metav1.ConditionFalse, "InvalidRequest", "198.51.100.150")
	c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
	if !strings.Contains(c.Message, v1alpha1.AnnotationIPs) || !strings.Contains(c.Message, "198.51.100.999") {
		t.Errorf("message %q should name the annotation and the bad value", c.Message)
	}
	h.updateSvc(h.ns, "s", func(s *corev1.Service) {
		s.Annotations = map[string]string{v1alpha1.AnnotationIPs: "198.51.100.150", "metallb.io/loadBalancerIPs": "198.51.100.151"}
	})
	h.waitStatus(h.ns, "s", metav1.ConditionFalse, "InvalidRequest", "198.51.100.150")
	h.updateSvc(h.ns, "s", func(s *corev1.Service) { s.Annotations = nil })
	h.waitStatus(h.ns, "s", metav1.ConditionTrue, ReasonAllocated, "198.51.100.150")
}
