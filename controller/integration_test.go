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
	h.svc("metallb-ips", func(s *corev1.Service) { s.Annotations = map[string]string{"metallb.io/loadBalancerIPs": "203.0.113.9"} })
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
