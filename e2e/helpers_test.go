package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/e2e/lab"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

var seq atomic.Int64

// scenario is one test's objects: a namespace, pools and advertisements, all removed at the end.
type scenario struct {
	t    testing.TB
	ctx  context.Context
	ns   string
	crd  rest.Interface
	undo []func()
}

func newScenario(t testing.TB) *scenario {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // the 10-minute benchmark too
	crd, err := v1alpha1.NewRESTClient(env.lab.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{t: t, ctx: ctx, ns: fmt.Sprintf("e2e-%d", seq.Add(1)), crd: crd}
	if err := env.lab.EnsureNamespace(ctx, s.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := len(s.undo) - 1; i >= 0; i-- {
			s.undo[i]()
		}
		cancel()
	})
	return s
}

// apply creates a cluster-scoped ironlb object (deleted at the end of the test).
func (s *scenario) apply(resource string, obj interface{ GetName() string }) {
	s.t.Helper()
	if err := s.crd.Post().Resource(resource).Body(obj).Do(s.ctx).Error(); err != nil {
		s.t.Fatalf("creating %s %s: %v", resource, obj.GetName(), err)
	}
	s.undo = append(s.undo, func() {
		_ = s.crd.Delete().Resource(resource).Name(obj.GetName()).Do(context.Background()).Error()
	})
}

// l2Pool creates an IPPool of addrs and an L2Advertisement for it.
func (s *scenario) l2Pool(addrs ...string) string {
	name := s.ns + "-l2"
	s.apply("ippools", &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs, AutoAssign: ptr(false)}})
	s.apply("l2advertisements", &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{name}}})
	return name
}

// pods starts one pod labelled app=app on each of the given nodes.
func (s *scenario) pods(app string, nodes ...*lab.Node) []*lab.Pod {
	s.t.Helper()
	var out []*lab.Pod
	for i, n := range nodes {
		p, err := env.lab.AddPod(s.ctx, lab.PodSpec{Namespace: s.ns, Name: fmt.Sprintf("%s-%d", app, i), Node: n, Labels: map[string]string{"app": app}})
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// service creates a LoadBalancer Service for app from pool.
func (s *scenario) service(name, app, pool string, mutate func(*corev1.Service)) {
	s.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name, Annotations: map[string]string{v1alpha1.AnnotationPool: pool}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if mutate != nil {
		mutate(svc)
	}
	if _, err := env.lab.Client.CoreV1().Services(s.ns).Create(s.ctx, svc, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("creating service %s: %v", name, err)
	}
	s.undo = append(s.undo, func() {
		_ = env.lab.Client.CoreV1().Services(s.ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func (s *scenario) eventually(what string, timeout time.Duration, cond func() (bool, string)) {
	s.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(s.ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, seen := cond()
		last = seen
		return ok, nil
	})
	if err != nil {
		s.t.Fatalf("waiting for %s: %v; last seen: %s", what, err, last)
	}
}

// holds polls cond every 200 ms for d and fails at the first time it does not hold.
func (s *scenario) holds(what string, d time.Duration, cond func() (bool, string)) {
	s.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if ok, seen := cond(); !ok {
			s.t.Fatalf("%s stopped holding after %v: %s", what, d-time.Until(end), seen)
		}
	}
}

// ingress waits for the Service's external IPs.
func (s *scenario) ingress(name string) []string {
	s.t.Helper()
	var ips []string
	s.eventually("an external IP for "+name, 20*time.Second, func() (bool, string) {
		svc, err := env.lab.Client.CoreV1().Services(s.ns).Get(s.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ips = ips[:0]
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		return len(ips) > 0, fmt.Sprint(svc.Status)
	})
	return ips
}

// announcers returns the nodes whose ServiceAnnouncements (mode L2) name the Service.
func (s *scenario) announcers(name string) []string {
	var list v1alpha1.ServiceAnnouncementList
	if err := s.crd.Get().Namespace(s.ns).Resource("serviceannouncements").Do(s.ctx).Into(&list); err != nil {
		return nil
	}
	var nodes []string
	for _, a := range list.Items {
		if a.ServiceName == name && a.Mode == v1alpha1.AnnouncementL2 {
			nodes = append(nodes, a.NodeName)
		}
	}
	slices.Sort(nodes)
	return nodes
}

// owner waits until exactly one node other than notNode announces the Service and returns it.
// notNode's own announcement may remain: a speaker killed with SIGKILL cannot remove it (its
// next start does).
func (s *scenario) owner(name, notNode string) *lab.Node {
	s.t.Helper()
	var got []string
	s.eventually("one L2 announcer of "+name, 20*time.Second, func() (bool, string) {
		got = slices.DeleteFunc(s.announcers(name), func(n string) bool { return n == notNode })
		return len(got) == 1, fmt.Sprint(got)
	})
	return env.lab.Node(got[0])
}

// with returns the scenario for a subtest: the same objects, failing the subtest.
func (s *scenario) with(t *testing.T) *scenario {
	c := *s
	c.t = t
	return &c
}

var arpingReply = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(([0-9.]+)\)`)

// arping sends count ARP requests for ip from the LAN client and returns the MAC of each reply.
func arping(ctx context.Context, ip string, count int) ([]string, error) {
	// One request every 200 ms; wait a second past the last for its reply.
	out, err := lab.Exec(ctx, lab.NSLANClient, "arping", "-c", fmt.Sprint(count), "-W", "0.2", "-w", fmt.Sprint(count/5+2), "-i", "eth0", ip)
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, m[1])
	}
	if len(macs) == 0 && err != nil {
		return nil, err
	}
	return macs, nil
}

// neighbour returns the client's neighbour entry for ip: its MAC and state.
func neighbour(ctx context.Context, ip string) (mac, state string) {
	out, _ := lab.Exec(ctx, lab.NSLANClient, "ip", "neigh", "show", ip, "dev", "eth0")
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			mac = f[i+1]
		}
	}
	if len(f) > 0 {
		state = f[len(f)-1]
	}
	return mac, state
}

func ptr[T any](v T) *T { return &v }

// stableOwner waits until one node announces the Service, answers ARP for ip, and stays the
// owner for 2 s (after a repaired fault, memberlist may still be rejoining the repaired node,
// whose return can move the IP back).
func (s *scenario) stableOwner(name, ip string) *lab.Node {
	s.t.Helper()
	var owner *lab.Node
	var since time.Time
	s.eventually("a stable owner of "+name, 40*time.Second, func() (bool, string) {
		a := s.announcers(name)
		macs, _ := arping(s.ctx, ip, 1)
		if len(a) != 1 || len(macs) != 1 || macs[0] != env.lab.Node(a[0]).MAC.String() {
			owner = nil
			return false, fmt.Sprint(a, macs)
		}
		if owner == nil || owner.Name != a[0] {
			owner, since = env.lab.Node(a[0]), time.Now()
		}
		return time.Since(since) >= 2*time.Second, fmt.Sprint(a, macs)
	})
	return owner
}
