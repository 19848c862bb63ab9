package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// harness is one test's world: its own namespace, its pools, and a controller.
type harness struct {
	t     *testing.T
	ctx   context.Context
	ns    string
	crd   rest.Interface
	pools []string
}

var nsSeq atomic.Int64

// testConfig is DefaultConfig with short leader-election times and no metrics endpoint.
func testConfig(identity string) Config {
	cfg := DefaultConfig()
	cfg.Identity = identity
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 3*time.Second, 2*time.Second, 250*time.Millisecond
	cfg.PoolStatusDelay = 20 * time.Millisecond
	cfg.MetricsAddr = ""
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// runningController is a controller in this process; stop ends it like SIGTERM (kill: like
// SIGKILL, without releasing the Lease).
type runningController struct {
	c      *Controller
	cancel context.CancelFunc
	done   chan error
}

func startController(t *testing.T, cfg Config) *runningController {
	t.Helper()
	return startControllerWith(t, cfg, testEnv.cfg)
}

// startControllerWith starts a controller on a client configuration of the test's (one that
// injects faults).
func startControllerWith(t *testing.T, cfg Config, restCfg *rest.Config) *runningController {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, restCfg, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningController{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- c.Run(ctx) }()
	return rc
}

func (rc *runningController) stop(t *testing.T) {
	t.Helper()
	rc.cancel()
	select {
	case err := <-rc.done:
		if err != nil {
			t.Errorf("controller stopped with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("controller did not stop within 15 s")
	}
}

// newHarness creates a namespace and starts a controller for one test.
func newHarness(t *testing.T) *harness {
	t.Helper()
	h := newBareHarness(t)
	rc := startController(t, testConfig("test-"+h.ns))
	t.Cleanup(func() { rc.stop(t) })
	return h
}

// newBareHarness creates a namespace; the test starts its controllers. Cleanup (after the
// test's controllers stopped) deletes the test's Services and pools with a controller of its
// own, which removes the pools' finalizers.
func newBareHarness(t *testing.T) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	crd, err := v1alpha1.NewRESTClient(testEnv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx, ns: fmt.Sprintf("t%d-%s", nsSeq.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))), crd: crd}
	if len(h.ns) > 63 {
		h.ns = strings.TrimRight(h.ns[:63], "-")
	}
	h.namespace(h.ns, nil)
	t.Cleanup(h.cleanup)
	return h
}

func (h *harness) cleanup() {
	ctx := context.Background()
	rc := startController(h.t, testConfig("cleanup-"+h.ns))
	defer rc.stop(h.t)
	svcs, _ := testEnv.kube.CoreV1().Services(h.ns).List(ctx, metav1.ListOptions{})
	for _, s := range svcs.Items {
		_ = testEnv.kube.CoreV1().Services(h.ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
	}
	for _, p := range h.pools {
		_ = h.crd.Delete().Resource("ippools").Name(p).Do(ctx).Error()
	}
	for _, p := range h.pools {
		h.eventually(fmt.Sprintf("pool %s deleted", p), func() (bool, string) {
			err := h.crd.Get().Resource("ippools").Name(p).Do(ctx).Error()
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
}

// eventually polls cond until it holds or 20 s pass; the string says what was seen last.
func (h *harness) eventually(what string, cond func() (bool, string)) {
	h.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(h.ctx, 25*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		ok, seen := cond()
		last = seen
		return ok, nil
	})
	if err != nil {
		h.t.Fatalf("waiting for %s: %v; last seen: %s", what, err, last)
	}
}

func (h *harness) namespace(name string, labels map[string]string) {
	h.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := testEnv.kube.CoreV1().Namespaces().Create(h.ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		h.t.Fatal(err)
	}
}

// pool creates an IPPool named after the test; mutate may change its spec.
func (h *harness) pool(name string, addrs []string, mutate func(*v1alpha1.IPPool)) string {
	h.t.Helper()
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: h.ns + "-" + name}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
	if mutate != nil {
		mutate(p)
	}
	if err := h.crd.Post().Resource("ippools").Body(p).Do(h.ctx).Error(); err != nil {
		h.t.Fatalf("creating pool %s: %v", p.Name, err)
	}
	h.pools = append(h.pools, p.Name)
	return p.Name
}

func (h *harness) getPool(name string) *v1alpha1.IPPool {
	h.t.Helper()
	var p v1alpha1.IPPool
	if err := h.crd.Get().Resource("ippools").Name(name).Do(h.ctx).Into(&p); err != nil {
		h.t.Fatalf("getting pool %s: %v", name, err)
	}
	return &p
}

func (h *harness) updatePool(name string, mutate func(*v1alpha1.IPPool)) {
	h.t.Helper()
	h.eventually("pool "+name+" updated", func() (bool, string) {
		p := h.getPool(name)
		mutate(p)
		err := h.crd.Put().Resource("ippools").Name(name).Body(p).Do(h.ctx).Error()
		return err == nil, fmt.Sprint(err)
	})
}

// svc creates a LoadBalancer Service in the test's namespace (or mutate's).
func (h *harness) svc(name string, mutate func(*corev1.Service)) *corev1.Service {
	h.t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	created, err := testEnv.kube.CoreV1().Services(s.Namespace).Create(h.ctx, s, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatalf("creating service %s: %v", name, err)
	}
	return created
}

func (h *harness) getSvc(ns, name string) *corev1.Service {
	h.t.Helper()
	s, err := testEnv.kube.CoreV1().Services(ns).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatalf("getting service %s/%s: %v", ns, name, err)
	}
	return s
}

func (h *harness) updateSvc(ns, name string, mutate func(*corev1.Service)) {
	h.t.Helper()
	h.eventually("service "+name+" updated", func() (bool, string) {
		s := h.getSvc(ns, name)
		mutate(s)
		_, err := testEnv.kube.CoreV1().Services(ns).Update(h.ctx, s, metav1.UpdateOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

// describe renders what a test needs to see of a Service's status.
func describe(s *corev1.Service) string {
	var ips []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		mode := "<nil>"
		if in.IPMode != nil {
			mode = string(*in.IPMode)
		}
		ips = append(ips, in.IP+"("+mode+")")
	}
	c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
	cond := "no condition"
	if c != nil {
		cond = fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
	}
	return fmt.Sprintf("ips=%v condition=%s", ips, cond)
}

// waitStatus waits until the Service's ingress IPs are exactly ips and its condition has the
// given status and reason; it returns the Service.
func (h *harness) waitStatus(ns, name string, status metav1.ConditionStatus, reason string, ips ...string) *corev1.Service {
	h.t.Helper()
	var s *corev1.Service
	h.eventually(fmt.Sprintf("service %s: %s/%s with ips %v", name, status, reason, ips), func() (bool, string) {
		s = h.getSvc(ns, name)
		got := make([]string, 0, len(s.Status.LoadBalancer.Ingress))
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
				return false, describe(s)
			}
			got = append(got, in.IP)
		}
		c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
		ok := strings.Join(got, ",") == strings.Join(ips, ",") && c != nil && c.Status == status && c.Reason == reason
		return ok, describe(s)
	})
	return s
}

// waitEvent waits for an event with reason on the object named name in namespace ns
// ("" for cluster-scoped objects, whose events land in "default").
func (h *harness) waitEvent(ns, name, reason string) corev1.Event {
	h.t.Helper()
	var found corev1.Event
	evNS := ns
	if evNS == "" {
		evNS = metav1.NamespaceDefault
	}
	h.eventually(fmt.Sprintf("event %s on %s", reason, name), func() (bool, string) {
		list, err := testEnv.kube.CoreV1().Events(evNS).List(h.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.Reason == reason {
				found = e
				return true, ""
			}
			seen = append(seen, e.Reason)
		}
		return false, fmt.Sprint(seen)
	})
	return found
}

// countEvents counts the events with reason on name.
func (h *harness) countEvents(ns, name, reason string) int {
	h.t.Helper()
	list, err := testEnv.kube.CoreV1().Events(ns).List(h.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Reason == reason {
			n += int(e.Count)
		}
	}
	return n
}

func ptr[T any](v T) *T { return &v }
