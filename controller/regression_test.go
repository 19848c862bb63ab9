package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// The tests in this file each reproduce a bug found in review.

// waitPoolSettled waits until the controller wrote the pool's status with the finalizer in
// place: the pool events it caused (which reconcile every Service) are behind it.
func (h *harness) waitPoolSettled(pool string) {
	h.t.Helper()
	h.eventually("pool "+pool+" settled", func() (bool, string) {
		p := h.getPool(pool)
		return len(p.Finalizers) == 1 && meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.IPPoolReady),
			fmt.Sprintf("finalizers %v, conditions %+v", p.Finalizers, p.Status.Conditions)
	})
}

// Services have no metadata.generation: a change of spec alone (type, loadBalancerIP) must
// still be reconciled.
func TestSpecChangesAreReconciled(t *testing.T) {
	h := newHarness(t)
	pool := h.pool("a", []string{"198.51.100.170/31"}, nil)
	h.svc("moves", nil)
	h.waitStatus(h.ns, "moves", metav1.ConditionTrue, ReasonAllocated, "198.51.100.170")
	h.waitPoolSettled(pool)

	// A ClusterIP Service becomes a LoadBalancer: allocated.
	{
		h.svc("late", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
		h.updateSvc(h.ns, "late", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer })
		h.waitStatus(h.ns, "late", metav1.ConditionTrue, ReasonAllocated, "198.51.100.171")
	}
	// spec.loadBalancerIP changes: the Service moves.
	{
		if err := testEnv.kube.CoreV1().Services(h.ns).Delete(h.ctx, "late", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		h.eventually("late's address free", func() (bool, string) {
			st := h.getPool(pool).Status
			return st.IPv4 != nil && st.IPv4.Assigned == "1", fmt.Sprintf("%+v", st.IPv4)
		})
		h.updateSvc(h.ns, "moves", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.171" })
		h.waitStatus(h.ns, "moves", metav1.ConditionTrue, ReasonAllocated, "198.51.100.171")
	}
	// A pending Service becomes ClusterIP: its condition is cleared.
	{
		h.svc("filler", nil)
		h.waitStatus(h.ns, "filler", metav1.ConditionTrue, ReasonAllocated, "198.51.100.170")
		h.svc("pending", nil)
		h.waitStatus(h.ns, "pending", metav1.ConditionFalse, "PoolExhausted")
		h.updateSvc(h.ns, "pending", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			for i := range s.Spec.Ports {
				s.Spec.Ports[i].NodePort = 0
			}
			s.Spec.AllocateLoadBalancerNodePorts = nil
		})
		h.eventually("pending's condition cleared", func() (bool, string) {
			s := h.getSvc(h.ns, "pending")
			return !hasOurCondition(s), describe(s)
		})
	}
}

// A Service that moves to another address (here: to another pool) frees its old one; a
// Service waiting for an address gets it.
func TestAddressFreedByAMoveGoesToAPendingService(t *testing.T) {
	h := newHarness(t)
	h.pool("tiny", []string{"198.51.100.180/32"}, nil)
	manual := h.pool("manual", []string{"203.0.113.180/32"}, func(p *v1alpha1.IPPool) { p.Spec.AutoAssign = ptr(false) })
	h.svc("mover", nil)
	h.waitStatus(h.ns, "mover", metav1.ConditionTrue, ReasonAllocated, "198.51.100.180")
	h.svc("waiting", nil)
	h.waitStatus(h.ns, "waiting", metav1.ConditionFalse, "PoolExhausted")
	h.updateSvc(h.ns, "mover", func(s *corev1.Service) { s.Annotations = map[string]string{v1alpha1.AnnotationPool: manual} })
	h.waitStatus(h.ns, "mover", metav1.ConditionTrue, ReasonAllocated, "203.0.113.180")
	h.waitStatus(h.ns, "waiting", metav1.ConditionTrue, ReasonAllocated, "198.51.100.180")
}

// Statuses are written in parallel, yet an address a Service moved away from goes to another
// Service only once the mover's new status is written: two Services never show one address.
// The mover's status writes are slowed down (a slow API server) to widen the window.
func TestAFreedAddressWaitsForTheMoversStatus(t *testing.T) {
	h := newBareHarness(t)
	restCfg := rest.CopyConfig(testEnv.cfg)
	moverStatus := "/api/v1/namespaces/" + h.ns + "/services/mover/status"
	restCfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && r.URL.Path == moverStatus {
				time.Sleep(time.Second)
			}
			return rt.RoundTrip(r)
		})
	}
	rc := startControllerWith(t, testConfig("test-"+h.ns), restCfg)
	t.Cleanup(func() { rc.stop(t) })

	h.pool("tiny", []string{"198.51.100.181/32"}, nil)
	manual := h.pool("manual", []string{"203.0.113.181/32"}, func(p *v1alpha1.IPPool) { p.Spec.AutoAssign = ptr(false) })
	h.svc("mover", nil)
	h.waitStatus(h.ns, "mover", metav1.ConditionTrue, ReasonAllocated, "198.51.100.181")
	h.svc("waiting", nil)
	h.waitStatus(h.ns, "waiting", metav1.ConditionFalse, "PoolExhausted")
	h.updateSvc(h.ns, "mover", func(s *corev1.Service) { s.Annotations = map[string]string{v1alpha1.AnnotationPool: manual} })
	shows := func(s *corev1.Service) bool {
		return slices.ContainsFunc(s.Status.LoadBalancer.Ingress, func(in corev1.LoadBalancerIngress) bool { return in.IP == "198.51.100.181" })
	}
	h.eventually("waiting gets 198.51.100.181", func() (bool, string) {
		w := h.getSvc(h.ns, "waiting")
		if !shows(w) {
			return false, describe(w)
		}
		if m := h.getSvc(h.ns, "mover"); shows(m) { // read after: mover showed it at the same time
			t.Fatalf("waiting got 198.51.100.181 while mover still shows it: waiting %s, mover %s", describe(w), describe(m))
		}
		return true, ""
	})
	h.waitStatus(h.ns, "mover", metav1.ConditionTrue, ReasonAllocated, "203.0.113.181")
}

// The initial sync ends when every Service that existed at the start was reconciled, its
// status written: not when the queue runs dry while other workers still write.
func TestInitialSyncWaitsForEveryStatusWrite(t *testing.T) {
	h := newBareHarness(t)
	h.pool("pool", []string{"198.51.100.182/31"}, nil)
	h.svc("slow", nil)
	h.svc("fast", nil)
	restCfg := rest.CopyConfig(testEnv.cfg)
	slowStatus := "/api/v1/namespaces/" + h.ns + "/services/slow/status"
	restCfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && r.URL.Path == slowStatus {
				time.Sleep(2 * time.Second)
			}
			return rt.RoundTrip(r)
		})
	}
	rc := startControllerWith(t, testConfig("test-"+h.ns), restCfg)
	t.Cleanup(func() { rc.stop(t) })
	h.eventually("the initial sync", func() (bool, string) {
		if testutil.ToFloat64(rc.c.metrics.initialSync) == 0 {
			return false, "not synced"
		}
		if s := h.getSvc(h.ns, "slow"); len(s.Status.LoadBalancer.Ingress) == 0 {
			t.Fatalf("initial sync done while slow's status is still being written: %s", describe(s))
		}
		return true, ""
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A Service whose annotations became malformed after it got a shared address keeps its
// sharing attributes across a restart, so the Services sharing with it keep the address.
func TestRestartKeepsSharedAddressesOfAMalformedSharer(t *testing.T) {
	h := newBareHarness(t)
	h.pool("a", []string{"198.51.100.190-198.51.100.199"}, nil)
	rc := startController(t, testConfig("before-"+h.ns))
	shared := func(key string, port int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Annotations = map[string]string{v1alpha1.AnnotationSharingKey: key}
			s.Spec.Ports[0].Port = port
		}
	}
	// Two pairs; in each, the older Service gets a bad annotation after allocation.
	h.svc("ips-80", shared("ips", 80))
	h.waitStatus(h.ns, "ips-80", metav1.ConditionTrue, ReasonAllocated, "198.51.100.190")
	h.svc("ips-443", shared("ips", 443))
	h.waitStatus(h.ns, "ips-443", metav1.ConditionTrue, ReasonAllocated, "198.51.100.190")
	h.svc("pool-80", shared("pool", 80))
	h.waitStatus(h.ns, "pool-80", metav1.ConditionTrue, ReasonAllocated, "198.51.100.191")
	h.svc("pool-443", shared("pool", 443))
	h.waitStatus(h.ns, "pool-443", metav1.ConditionTrue, ReasonAllocated, "198.51.100.191")
	h.updateSvc(h.ns, "ips-80", func(s *corev1.Service) { s.Annotations[v1alpha1.AnnotationIPs] = "not-an-ip" })
	h.updateSvc(h.ns, "pool-80", func(s *corev1.Service) {
		s.Annotations[v1alpha1.AnnotationPool] = "x"
		s.Annotations["metallb.io/address-pool"] = "y"
	})
	h.waitStatus(h.ns, "ips-80", metav1.ConditionFalse, string("InvalidRequest"), "198.51.100.190")
	h.waitStatus(h.ns, "pool-80", metav1.ConditionFalse, string("InvalidRequest"), "198.51.100.191")
	rc.stop(t)

	rc = startController(t, testConfig("after-"+h.ns))
	defer rc.stop(t)
	// The existing Services are queued before this one, and reconciled before it.
	h.svc("marker", nil)
	h.eventually("marker allocated", func() (bool, string) {
		s := h.getSvc(h.ns, "marker")
		return meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ServiceConditionIPAllocated), describe(s)
	})
	for _, c := range []struct{ name, ip string }{
		{"ips-80", "198.51.100.190"}, {"ips-443", "198.51.100.190"},
		{"pool-80", "198.51.100.191"}, {"pool-443", "198.51.100.191"},
	} {
		if s := h.getSvc(h.ns, c.name); len(s.Status.LoadBalancer.Ingress) != 1 || s.Status.LoadBalancer.Ingress[0].IP != c.ip {
			t.Errorf("%s after the restart: %s, want %s kept", c.name, describe(s), c.ip)
		}
	}
}

// A pool whose deletion waits for a Service keeps its finalizer across a controller restart.
func TestRestartKeepsAPoolBeingDeleted(t *testing.T) {
	h := newBareHarness(t)
	rc := startController(t, testConfig("before-"+h.ns))
	pool := h.pool("doomed", []string{"198.51.100.200/31"}, nil)
	h.svc("holder", nil)
	h.waitStatus(h.ns, "holder", metav1.ConditionTrue, ReasonAllocated, "198.51.100.200")
	h.waitPoolSettled(pool)
	if err := h.crd.Delete().Resource("ippools").Name(pool).Do(h.ctx).Error(); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(h.ns, "holder", metav1.ConditionTrue, ReasonOutsidePool, "198.51.100.200")
	rc.stop(t)

	rc = startController(t, testConfig("after-"+h.ns))
	defer rc.stop(t)
	// Pool statuses are written oldest pool first: once the new controller put its finalizer
	// on a pool created now, it has been through the dying one.
	marker := h.pool("marker", []string{"203.0.113.200/32"}, nil)
	h.waitPoolSettled(marker)
	time.Sleep(300 * time.Millisecond) // and a retry, had the first attempt failed
	var p v1alpha1.IPPool
	if err := h.crd.Get().Resource("ippools").Name(pool).Do(h.ctx).Into(&p); err != nil {
		t.Fatalf("the pool holder still draws from: %v", err)
	}
	c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.IPPoolReady)
	if c == nil || c.Reason != reasonDeleting || !strings.Contains(c.Message, "holder") {
		t.Errorf("Ready condition %+v, want Deleting naming holder", c)
	}
	h.waitStatus(h.ns, "holder", metav1.ConditionTrue, ReasonOutsidePool, "198.51.100.200")
}

// A pool status write that fails (here: a conflict with a newer version) emits no event: the
// retry would emit it again.
func TestPoolEventsOnlyAfterTheStatusIsWritten(t *testing.T) {
	h := newBareHarness(t)
	name := h.pool("conflict", []string{"198.51.100.210/32"}, nil)
	stale := h.getPool(name)
	stale.Finalizers = []string{PoolFinalizer}
	h.updatePool(name, func(p *v1alpha1.IPPool) { p.Finalizers = []string{PoolFinalizer} })
	rec := record.NewFakeRecorder(10)
	c := &Controller{crd: h.crd, recorder: rec, log: testConfig("unused").Log}
	err := c.syncPoolObject(h.ctx, stale, poolView{overlap: []allocator.Overlap{{Pool: name, With: "older", Range: allocator.PrefixRange(netip.MustParsePrefix("198.51.100.210/32"))}}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("syncPoolObject with a stale pool: %v, want a conflict", err)
	}
	select {
	case ev := <-rec.Events:
		t.Errorf("event %q for a status that was not written", ev)
	default:
	}
}

// A Service seen before its namespace (two informers, two watches) is reconciled again when
// the namespace arrives, with the namespace's labels.
func TestNamespaceArrivingLateRequeuesItsServices(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := New(testConfig("ns-late"), testEnv.cfg, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.factory.Start(ctx.Done())
	defer func() {
		cancel()
		c.factory.Shutdown()
		c.queue.ShutDown()
	}()
	svcInf := c.factory.Core().V1().Services().Informer()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced, c.factory.Core().V1().Namespaces().Informer().HasSynced) {
		t.Fatal("caches did not sync")
	}
	for c.queue.Len() > 0 { // the initial list
		key, _ := c.queue.Get()
		c.queue.Done(key)
	}
	ns := fmt.Sprintf("t%d-late-namespace", nsSeq.Add(1))
	// The Service as the informer would deliver it before its namespace.
	if err := svcInf.GetIndexer().Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "early"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := testEnv.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = testEnv.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for c.queue.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.queue.Len() == 0 {
		t.Fatal("the namespace arrived; its Service was not queued")
	}
	if key, _ := c.queue.Get(); key != ns+"/early" {
		t.Errorf("queued %q, want %q", key, ns+"/early")
	}
}
