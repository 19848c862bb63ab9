package controller

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// ipWatcher sees every version of every Service in a namespace and checks, at each one, that
// no stable Service's IP changed and that no IP is held by two Services (none share a key).
type ipWatcher struct {
	mu         sync.Mutex
	current    map[string][]string // service -> ingress IPs, as last seen
	stable     map[string]string   // service -> the IP it must keep
	violations []string
	events     int
}

func watchIPs(t *testing.T, ns string) *ipWatcher {
	w := &ipWatcher{current: map[string][]string{}, stable: map[string]string{}}
	factory := informers.NewSharedInformerFactoryWithOptions(testEnv.kube, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Services().Informer()
	see := func(obj any) {
		s, ok := obj.(*corev1.Service)
		if !ok {
			return
		}
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		w.observe(s.Name, ips)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    see,
		UpdateFunc: func(_, n any) { see(n) },
		DeleteFunc: func(obj any) {
			if s, ok := obj.(*corev1.Service); ok {
				w.mu.Lock()
				delete(w.current, s.Name)
				w.mu.Unlock()
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	factory.WaitForCacheSync(stop)
	return w
}

func (w *ipWatcher) observe(name string, ips []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events++
	w.current[name] = ips
	if want, ok := w.stable[name]; ok && (len(ips) != 1 || ips[0] != want) {
		w.violations = append(w.violations, fmt.Sprintf("%s: IP %v, it had %s", name, ips, want))
	}
	holders := map[string]string{}
	for svc, list := range w.current {
		for _, ip := range list {
			if other, dup := holders[ip]; dup {
				w.violations = append(w.violations, fmt.Sprintf("%s held by %s and %s", ip, other, svc))
			}
			holders[ip] = svc
		}
	}
}

func (w *ipWatcher) pin(names []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range names {
		w.stable[n] = w.current[n][0]
	}
}

// TestRestartsNeverMoveAnIP: 200 allocated Services, 10 controller restarts (graceful and
// killed in turn) while other Services come and go; no stable Service's IP ever changes and no
// IP is ever held twice.
func TestRestartsNeverMoveAnIP(t *testing.T) {
	h := newBareHarness(t)
	h.pool("big", []string{"198.51.100.0/24", "203.0.113.0/24"}, nil)
	// Even rounds kill the controller: those run without releasing the Lease on stop.
	churnConfig := func(round int) Config {
		cfg := testConfig(fmt.Sprintf("churn-%d", round))
		cfg.ReleaseOnCancel = (round+1)%2 != 0
		return cfg
	}
	rc := startController(t, churnConfig(0))
	w := watchIPs(t, h.ns)
	var stable []string
	for i := range 200 {
		name := fmt.Sprintf("stable-%03d", i)
		stable = append(stable, name)
		h.svc(name, nil)
	}
	h.eventually("200 Services allocated", func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, name := range stable {
			if len(w.current[name]) == 1 {
				n++
			}
		}
		return n == 200, fmt.Sprintf("%d allocated", n)
	})
	w.pin(stable)

	var others []string
	seq := 0
	for round := 1; round <= 10; round++ {
		kill := round%2 == 0
		if kill {
			// Like SIGKILL: the Lease is not released (ReleaseOnCancel false); the next
			// controller waits it out.
			rc.cancel()
			<-rc.done
		} else {
			rc.stop(t)
		}
		// While no controller runs: delete two earlier Services, create three new ones.
		for range 2 {
			if len(others) == 0 {
				break
			}
			if err := testEnv.kube.CoreV1().Services(h.ns).Delete(h.ctx, others[0], metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			others = others[1:]
		}
		for range 3 {
			seq++
			name := fmt.Sprintf("other-%03d", seq)
			others = append(others, name)
			h.svc(name, nil)
		}
		rc = startController(t, churnConfig(round))
		h.eventually(fmt.Sprintf("round %d: new Services allocated", round), func() (bool, string) {
			w.mu.Lock()
			defer w.mu.Unlock()
			for _, name := range others {
				if len(w.current[name]) != 1 {
					return false, name + " has no IP"
				}
			}
			return true, ""
		})
	}
	rc.stop(t)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Error(v)
	}
	t.Logf("%d Service versions observed, %d violations", w.events, len(w.violations))
}

// TestLeaderElection: two controllers; only the leader reconciles; when it dies without
// releasing the Lease, the other takes over within the lease duration and allocates without
// duplicating an address.
func TestLeaderElection(t *testing.T) {
	h := newBareHarness(t)
	h.pool("le", []string{"198.51.100.160/29"}, nil)
	// Neither releases the Lease when stopped: stopping the leader is a kill.
	cfg := testConfig("le-a")
	cfg.ReleaseOnCancel = false
	a := startController(t, cfg)
	cfg.Identity = "le-b"
	b := startController(t, cfg)
	var leader, follower *runningController
	h.eventually("a leader", func() (bool, string) {
		la, lb := testutil.ToFloat64(a.c.metrics.leader), testutil.ToFloat64(b.c.metrics.leader)
		switch {
		case la == 1 && lb == 0:
			leader, follower = a, b
		case lb == 1 && la == 0:
			leader, follower = b, a
		}
		return leader != nil, fmt.Sprintf("a=%v b=%v", la, lb)
	})
	defer follower.stop(t)
	h.svc("before", nil)
	h.waitStatus(h.ns, "before", metav1.ConditionTrue, ReasonAllocated, "198.51.100.160")
	if reconciles(leader) == 0 || reconciles(follower) != 0 {
		t.Fatalf("reconciles: leader %d, follower %d; want some and none", reconciles(leader), reconciles(follower))
	}

	killed := time.Now()
	leader.cancel()
	<-leader.done
	h.eventually("the follower leads", func() (bool, string) {
		return testutil.ToFloat64(follower.c.metrics.leader) == 1, ""
	})
	took := time.Since(killed)
	// The follower sees the Lease expire LeaseDuration after it last saw it renewed (at most a
	// RetryPeriod before the kill) and tries every RetryPeriod with client-go's jitter of up to
	// 1.2x: the bound is the lease time plus those retry periods.
	if limit := cfg.LeaseDuration + 4*cfg.RetryPeriod; took > limit {
		t.Errorf("takeover took %v, want within %v (lease duration %v plus retries)", took, limit, cfg.LeaseDuration)
	}
	t.Logf("takeover %v after the leader was killed (lease duration %v)", took.Round(time.Millisecond), cfg.LeaseDuration)
	h.svc("after", nil)
	h.waitStatus(h.ns, "after", metav1.ConditionTrue, ReasonAllocated, "198.51.100.161")
	h.waitStatus(h.ns, "before", metav1.ConditionTrue, ReasonAllocated, "198.51.100.160")
}

// reconciles is how many Services a controller reconciled.
func reconciles(rc *runningController) uint64 {
	var m dto.Metric
	if err := rc.c.metrics.reconcile.Write(&m); err != nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}
