package controller

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// TestLeaderKilledDuringBurst (issue 14's fault suite): two ironlb-controller binaries (the
// chart's arguments) run against a real API server while Services are created and deleted
// continuously; the leader is killed (SIGKILL) 20 times, a new replica started each time. A
// watch on the Services checks every state the API server went through: a Service's address
// never changes once set, and no address is ever held by two Services at once.
//
// The lease timings are shorter than the chart's (1 s retry period, 3 s lease) so that 20
// take-overs fit in CI time; each take-over then waits for the killed leader's Lease to expire,
// as with the defaults, only sooner. This runs against e2e/apiserver, not the lab: the
// controller's part is the API server's, and the lab would add minutes per take-over.
func TestLeaderKilledDuringBurst(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ironlb-controller")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ironlb-controller").CombinedOutput(); err != nil {
		t.Fatalf("building the controller: %v\n%s", err, out)
	}
	lease := "leader-kill"
	var args []string
	for _, a := range chartControllerArgs(t) {
		if !strings.HasPrefix(a, "--lease-name=") {
			args = append(args, a)
		}
	}
	args = append(args, "--lease-name="+lease, "--lease-duration=3s", "--renew-deadline=2s", "--retry-period=500ms")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := "leader-kill"
	if _, err := testEnv.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crd, err := v1alpha1.NewRESTClient(testEnv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: v1alpha1.IPPoolSpec{
		Addresses: []string{"198.18.192.0/20"}, Allocation: &v1alpha1.IPPoolAllocation{Namespaces: []string{ns}}}}
	if err := crd.Post().Resource("ippools").Body(pool).Do(ctx).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = testEnv.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		_ = crd.Delete().Resource("ippools").Name(ns).Do(context.Background()).Error()
	})
	check := watchAddresses(t, ns)

	seq := 0
	start := func() *controllerProcess {
		seq++
		return startControllerProcess(t, bin, args, fmt.Sprintf("replica-%d", seq))
	}
	replicas := []*controllerProcess{start(), start()}

	// The burst: create Services all along, delete a third of them.
	burstCtx, stopBurst := context.WithCancel(ctx)
	var burst sync.WaitGroup
	var created, deleted int
	burst.Go(func() {
		for i := 0; burstCtx.Err() == nil; i++ {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%d", i)},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}}}}
			if _, err := testEnv.kube.CoreV1().Services(ns).Create(burstCtx, svc, metav1.CreateOptions{}); err == nil {
				created++
			}
			if i%3 == 2 {
				if err := testEnv.kube.CoreV1().Services(ns).Delete(burstCtx, fmt.Sprintf("s%d", i-1), metav1.DeleteOptions{}); err == nil {
					deleted++
				}
			}
			time.Sleep(20 * time.Millisecond) // bounded load: about 50 creates a second at most
		}
	})

	var takeovers []time.Duration
	for range 20 {
		leader := waitLeader(ctx, t, lease, replicas)
		killed := time.Now()
		_ = replicas[leader].cmd.Process.Signal(syscall.SIGKILL)
		<-replicas[leader].done
		replicas[leader] = start()
		waitLeader(ctx, t, lease, replicas)
		takeovers = append(takeovers, time.Since(killed))
	}
	stopBurst()
	burst.Wait()

	// Every Service left gets an address, as the last leader reconciles them.
	var missing int
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := testEnv.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		missing = 0
		for _, s := range list.Items {
			if len(s.Status.LoadBalancer.Ingress) == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	changed, shared, states := check()
	var worst time.Duration
	for _, d := range takeovers {
		worst = max(worst, d)
	}
	t.Logf("FAULT controller leader killed 20 times during a burst (%d created, %d deleted): %d Service states watched, address changes %d, addresses held twice %d, without an address at the end %d; take-over after a kill at most %v",
		created, deleted, states, len(changed), len(shared), missing, worst.Round(10*time.Millisecond))
	for _, c := range changed {
		t.Error(c)
	}
	for _, s := range shared {
		t.Error(s)
	}
	if missing > 0 {
		t.Errorf("%d Services without an address a minute after the burst", missing)
	}
}

// waitLeader returns the index of the replica holding the Lease (by its identity), once one does
// and reports itself leader.
func waitLeader(ctx context.Context, t *testing.T, lease string, replicas []*controllerProcess) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		l, err := testEnv.kube.CoordinationV1().Leases("ironlb-system").Get(ctx, lease, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		for i, r := range replicas {
			if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == r.identity {
				if v, ok := r.metric("ironlb_controller_leader"); ok && v == 1 {
					return i
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no replica leads within a minute")
	return -1
}

// watchAddresses watches the Services of ns and checks each state: an address, once a Service
// has one, never changes; no address is held by two Services. The returned function stops the
// watch and returns the violations and the number of states seen.
func watchAddresses(t *testing.T, ns string) func() (changed, shared []string, states int) {
	t.Helper()
	var mu sync.Mutex
	byUID := map[types.UID][]string{} // a Service's addresses, once set
	holder := map[string]types.UID{}  // address -> the Service holding it now
	names := map[types.UID]string{}
	var changed, shared []string
	n := 0
	update := func(svc *corev1.Service) {
		mu.Lock()
		defer mu.Unlock()
		n++
		names[svc.UID] = svc.Name
		var ips []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		if len(ips) == 0 {
			return
		}
		if old, ok := byUID[svc.UID]; ok && strings.Join(old, ",") != strings.Join(ips, ",") {
			changed = append(changed, fmt.Sprintf("Service %s changed address: %v -> %v", svc.Name, old, ips))
		}
		byUID[svc.UID] = ips
		for _, ip := range ips {
			if h, ok := holder[ip]; ok && h != svc.UID {
				shared = append(shared, fmt.Sprintf("%s held by %s and %s at once", ip, names[h], svc.Name))
			}
			holder[ip] = svc.UID
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(testEnv.kube, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Services().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { update(o.(*corev1.Service)) },
		UpdateFunc: func(_, o any) { update(o.(*corev1.Service)) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			svc := o.(*corev1.Service)
			mu.Lock()
			defer mu.Unlock()
			for _, ip := range byUID[svc.UID] {
				if holder[ip] == svc.UID {
					delete(holder, ip)
				}
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	var once sync.Once
	done := func() { once.Do(func() { close(stop); factory.Shutdown() }) }
	t.Cleanup(done)
	return func() ([]string, []string, int) {
		done()
		mu.Lock()
		defer mu.Unlock()
		return changed, shared, n
	}
}
