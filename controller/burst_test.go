package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/internal/kubeclient"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// TestBurstAtShippedDefaults is a regression guard for the client rate limits the binary ships
// with: 200 Services created at once by 16 clients, the controller at DefaultConfig (its API
// limits untouched; testConfig only shortens leader election), must all have their IPs within
// 15 s of the last create. At client-go's default 5 QPS (the limit ironlb once shipped with) the
// same burst needs about 80 s. The figures live in BenchmarkBurst.
func TestBurstAtShippedDefaults(t *testing.T) {
	h := newHarness(t)
	h.pool("burst", []string{"198.19.128.0/24"}, func(p *v1alpha1.IPPool) {
		p.Spec.Allocation = &v1alpha1.IPPoolAllocation{Namespaces: []string{h.ns}}
	})
	r := runBurst(h.ctx, t, h.ns, 200, 15*time.Second, 0)
	if r.missing > 0 {
		t.Fatalf("%d of 200 Services had no IP 15 s after the last create (%s)", r.missing, r)
	}
	t.Logf("200 Services: %s", r)
}

// burstResult is what runBurst saw.
type burstResult struct {
	n                  int
	create             time.Duration   // first create sent to last create returned
	latencies          []time.Duration // create returned -> IP seen, sorted
	afterLast          time.Duration   // last create returned -> every Service has an IP
	missing            int             // Services without an IP at the deadline
	statusWrites       int             // status changes seen on the Services
	servicesWithWrites int
}

func (r burstResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

func (r burstResult) String() string {
	return fmt.Sprintf("create %v; create-to-IP p50 %v p99 %v max %v; all IPs %v after the last create; %.2f status writes per Service",
		r.create.Round(time.Millisecond), r.quantile(0.5).Round(time.Millisecond), r.quantile(0.99).Round(time.Millisecond),
		r.quantile(1).Round(time.Millisecond), r.afterLast.Round(time.Millisecond), float64(r.statusWrites)/float64(r.n))
}

// runBurst creates n LoadBalancer Services in ns from 16 concurrent clients (each with no
// client-side limit: they stand for users and GitOps tools, not for ironlb) and waits up to
// deadline after the last create for every one to show an ingress IP. It watches the Services
// through an informer: every status change after the create is a write by the controller;
// they are counted until settle after the last IP arrived.
func runBurst(ctx context.Context, tb testing.TB, ns string, n int, deadline, settle time.Duration) burstResult {
	tb.Helper()
	const creators = 16
	type seen struct {
		created, gotIP time.Time
		status         corev1.ServiceStatus
		writes         int
	}
	var mu sync.Mutex
	svcs := make(map[string]*seen, n)
	get := func(name string) *seen {
		s := svcs[name]
		if s == nil {
			s = &seen{}
			svcs[name] = s
		}
		return s
	}
	observe := func(obj any, update bool) {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		s := get(svc.Name)
		if update && !statusEqual(s.status, svc.Status) {
			s.writes++
		}
		s.status = svc.Status
		if s.gotIP.IsZero() && len(svc.Status.LoadBalancer.Ingress) > 0 {
			s.gotIP = now
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(testEnv.kube, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Services().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { observe(o, false) },
		UpdateFunc: func(_, o any) { observe(o, true) },
	}); err != nil {
		tb.Fatal(err)
	}
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	factory.WaitForCacheSync(stop)

	names := make(chan string, n)
	for i := range n {
		names <- fmt.Sprintf("burst-%05d", i)
	}
	close(names)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, creators)
	for range creators {
		// The creators stand for users and CI pipelines, not ironlb: unlimited on the client side
		// so the burst is as sharp as the API server allows. The controller under test runs at
		// its shipped DefaultConfig limits.
		kube, err := kubernetes.NewForConfig(kubeclient.WithLimits(testEnv.cfg, kubeclient.Limits{QPS: -1}))
		if err != nil {
			tb.Fatal(err)
		}
		wg.Go(func() {
			for name := range names {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
					Spec: corev1.ServiceSpec{
						Type:     corev1.ServiceTypeLoadBalancer,
						Selector: map[string]string{"app": name},
						Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
					},
				}
				if _, err := kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating %s: %w", name, err)
					return
				}
				now := time.Now()
				mu.Lock()
				get(name).created = now
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	lastCreate := time.Now()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}

	r := burstResult{n: n, create: lastCreate.Sub(start)}
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range svcs {
			if s.gotIP.IsZero() {
				return false
			}
		}
		return len(svcs) == n
	}
	for !done() && time.Since(lastCreate) < deadline && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(settle)
	mu.Lock()
	defer mu.Unlock()
	var last time.Time
	for _, s := range svcs {
		if s.gotIP.IsZero() {
			r.missing++
			continue
		}
		last = maxTime(last, s.gotIP)
		r.latencies = append(r.latencies, max(0, s.gotIP.Sub(s.created)))
		r.statusWrites += s.writes
		if s.writes > 0 {
			r.servicesWithWrites++
		}
	}
	slices.Sort(r.latencies)
	r.afterLast = max(0, last.Sub(lastCreate))
	return r
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
