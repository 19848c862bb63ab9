package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// slicePods is the size of TestEndpointSlicesAtScale's Deployment: 25 pods, in 3 EndpointSlices
// of at most lab.MaxEndpointsPerSlice (10) endpoints. IRONLB_E2E_SLICE_PODS changes it, to
// measure the test at a real cluster's default of 100 endpoints per slice (105 pods: 11 slices
// in the lab); BENCHMARKS.md has both.
func slicePods(t testing.TB) int32 {
	v := os.Getenv("IRONLB_E2E_SLICE_PODS")
	if v == "" {
		return 25
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 6 || n > 500 {
		t.Fatalf("IRONLB_E2E_SLICE_PODS=%q: want a number of pods from 6 to 500", v)
	}
	return int32(n)
}

// TestEndpointSlicesAtScale: a LoadBalancer Service whose pods kube-controller-manager lists in
// several EndpointSlices. Each node's table merges them: the external IP (BGP, from behind the
// router) and the ClusterIP from every node reach every pod. Then the Deployment scales down to
// 5 pods, most endpoints turning terminating and going at once, slice by slice, while a client
// loops through the external IP: no request may fail.
func TestEndpointSlicesAtScale(t *testing.T) {
	s := newScenario(t)
	n := slicePods(t)
	const after = 5
	pool := s.bgpSetup([]string{"203.0.113.144/28"}, nil)
	start := time.Now()
	s.deployment("many", n, 2)
	s.service("many", "many", pool, nil)
	ip := s.ingress("many")[0]
	s.rolledOut("many", n, 12*time.Minute)
	t.Logf("%d pods ready in %.1f s", n, time.Since(start).Seconds())
	want := int(n+lab.MaxEndpointsPerSlice-1) / lab.MaxEndpointsPerSlice
	s.eventually(fmt.Sprintf("%d endpoints ready in at least %d EndpointSlices", n, want), time.Minute, func() (bool, string) {
		sl, ready, _ := s.sliceEndpoints("many")
		return sl >= want && ready == int(n), fmt.Sprintf("%d slices, %d ready", sl, ready)
	})
	pods := s.podNames("many")
	clusterIP := s.svc("many").Spec.ClusterIP
	t.Run("every pod reached through the external IP and from every node", func(t *testing.T) {
		s := s.with(t)
		s.reachesAll(lab.NSExtClient, ip, pods)
		for _, node := range env.lab.Nodes {
			s.reachesAll(node.NetNS, hostPort(clusterIP, 80), pods)
		}
	})

	// Scale down with a client looping through the external IP, 20 requests a second.
	tl := &timeline{}
	wctx, stopWatch := context.WithCancel(s.ctx)
	defer stopWatch()
	s.watchSlices(wctx, "many", tl)
	s.watchTables(wctx, ip, tl)
	s.watchPods(wctx, "many", tl)
	stop := make(chan struct{})
	p := startProbe(s.ctx, lab.NSExtClient, "http://"+ip+"/", 50*time.Millisecond, 6000, stop)
	time.Sleep(time.Second) // a few requests before
	begin := time.Now()
	tl.add("scale to %d", after)
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, after)
	if _, err := env.lab.Client.AppsV1().Deployments(s.ns).Patch(s.ctx, "many", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	s.rolledOut("many", after, 5*time.Minute)
	s.eventually("the EndpointSlices down to the remaining pods", time.Minute, func() (bool, string) {
		_, ready, term := s.sliceEndpoints("many")
		return ready == after && term == 0, fmt.Sprintf("%d ready, %d terminating", ready, term)
	})
	scaled := time.Since(begin)
	time.Sleep(2 * time.Second) // and a few after
	close(stop)
	stopWatch()
	sent, failed, _, _ := p.summary()
	t.Logf("scaled %d -> %d pods in %.1f s, through %s: %v; %s", n, after, scaled.Seconds(), ip, p, p.errors())
	if failed > 0 {
		t.Errorf("%d of %d requests failed during the scale-down, want 0; timeline:\n%s", failed, sent, tl.merged(p))
	} else {
		t.Logf("timeline:\n%s", tl.merged(nil))
	}
	t.Run("the remaining pods reached from every node", func(t *testing.T) {
		s := s.with(t)
		pods := s.podNames("many")
		s.reachesAll(lab.NSExtClient, ip, pods)
		for _, node := range env.lab.Nodes {
			s.reachesAll(node.NetNS, hostPort(clusterIP, 80), pods)
		}
	})
}

// podNames returns the names of the pods labelled app=app that are not terminating.
func (s *scenario) podNames(app string) []string {
	s.t.Helper()
	list, err := env.lab.Client.CoreV1().Pods(s.ns).List(s.ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	return out
}

// reachesAll sends requests from ns to addr until every pod of pods has answered (each answer
// picks an endpoint at random: about 4 requests per pod for 25 pods), and no other pod does.
func (s *scenario) reachesAll(ns, addr string, pods []string) {
	s.t.Helper()
	seen := map[string]int{}
	limit := 20 * len(pods)
	for i := 0; i < limit && len(seen) < len(pods); i++ {
		pod, _, err := get(s.ctx, ns, addr)
		if err != nil {
			s.t.Fatalf("request %d to %s from %s: %v", i, addr, ns, err)
		}
		if !slices.Contains(pods, pod) {
			s.t.Fatalf("request %d to %s from %s answered by %q, not one of the Service's pods", i, addr, ns, pod)
		}
		seen[pod]++
	}
	if len(seen) < len(pods) {
		s.t.Errorf("%d requests to %s from %s reached %d of %d pods", limit, addr, ns, len(seen), len(pods))
	}
}

// timeline records what happened when, for the failure message.
type timeline struct {
	mu     sync.Mutex
	events []string
}

func (tl *timeline) add(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.events = append(tl.events, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

// merged returns the events with p's failed and slow requests, in time order.
func (tl *timeline) merged(p *probe) string {
	tl.mu.Lock()
	all := slices.Clone(tl.events)
	tl.mu.Unlock()
	if p != nil {
		<-p.done
		for _, r := range p.results {
			if !r.ok || r.took > time.Second {
				all = append(all, fmt.Sprintf("%s request took %v: %s", r.at.Format("15:04:05.000"), r.took.Round(time.Millisecond), r.err))
			}
		}
	}
	slices.Sort(all)
	return strings.Join(all, "\n")
}

// watchSlices records every change of svc's EndpointSlices: per slice, its endpoints ready,
// serving and terminating, and the others.
func (s *scenario) watchSlices(ctx context.Context, svc string, tl *timeline) {
	opts := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc}
	go rewatch(ctx, tl, func() (watch.Interface, error) {
		return env.lab.Client.DiscoveryV1().EndpointSlices(s.ns).Watch(ctx, opts)
	},
		func(ev watch.Event) {
			sl, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok || sl.AddressType != discoveryv1.AddressTypeIPv4 {
				return
			}
			if ev.Type == watch.Deleted {
				tl.add("slice %s deleted", sl.Name)
				return
			}
			var ready, servingTerm, other int
			for _, e := range sl.Endpoints {
				c := e.Conditions
				switch {
				case c.Ready == nil || *c.Ready:
					ready++
				case c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating:
					servingTerm++
				default:
					other++
				}
			}
			tl.add("slice %s %s: %d ready, %d serving terminating, %d neither", sl.Name, strings.ToLower(string(ev.Type)), ready, servingTerm, other)
		})
}

// watchPods records when the pods labelled app=app turn ready or unready, start terminating
// and go.
func (s *scenario) watchPods(ctx context.Context, app string, tl *timeline) {
	last := map[string]string{}
	opts := metav1.ListOptions{LabelSelector: "app=" + app}
	go rewatch(ctx, tl, func() (watch.Interface, error) { return env.lab.Client.CoreV1().Pods(s.ns).Watch(ctx, opts) },
		func(ev watch.Event) {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				return
			}
			state := "unready"
			if lab.PodReady(p) {
				state = "ready"
			}
			if p.DeletionTimestamp != nil {
				state += ", terminating"
			}
			if ev.Type == watch.Deleted {
				state = "gone"
			}
			if last[p.Name] != state {
				if _, seen := last[p.Name]; seen || state != "ready" {
					tl.add("pod %s %s", p.Name, state)
				}
				last[p.Name] = state
			}
		})
}

// rewatch passes the events of the watches that start opens to handle until ctx ends, opening
// a new one when one fails or ends (a loaded API server's watch cache answers "Too large
// resource version" for a while).
func rewatch(ctx context.Context, tl *timeline, start func() (watch.Interface, error), handle func(watch.Event)) {
	for ctx.Err() == nil {
		w, err := start()
		if err == nil {
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					break
				}
				handle(ev)
			}
			w.Stop()
		} else if ctx.Err() == nil {
			tl.add("watch: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// watchTables records, every 100 ms, how each node's ironlb table forwards ip:80: the
// verdict of its frontends or no-endpoints element.
func (s *scenario) watchTables(ctx context.Context, ip string, tl *timeline) {
	re := regexp.MustCompile(regexp.QuoteMeta(ip) + `\s*\.\s*tcp\s*\.\s*80(?:\s+comment\s+"[^"]*")?\s*:\s*(goto [\w-]+|drop)`)
	for _, node := range env.lab.Nodes {
		go func() {
			last := ""
			for ctx.Err() == nil {
				var got []string
				for _, m := range []string{"frontends-v4", "no-endpoints-v4"} {
					out, err := lab.Exec(ctx, node.NetNS, "nft", "list", "map", "inet", "ironlb", m)
					if err != nil {
						got = append(got, m+": "+err.Error())
						continue
					}
					if sm := re.FindSubmatch(out); sm != nil {
						got = append(got, m+" "+string(sm[1]))
					}
				}
				if now := strings.Join(got, ", "); now != last && ctx.Err() == nil {
					tl.add("%s table: %s", node.Name, now)
					last = now
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
}
