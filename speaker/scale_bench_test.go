package speaker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/internal/kubeclient"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// BenchmarkScale runs many ironlb-speaker processes (the binary, with the chart's defaults
// except what a process outside a Pod needs) on simulated nodes against a real kube-apiserver,
// in BGP mode, and measures what the status shape and the event filters cost: the API objects
// and writes of the initial sync and of one new Service, the time from that Service to every
// speaker announcing it, each speaker's CPU and RSS at rest and under 10 endpoint changes/s
// (IRONLB_SCALE_CHURN_SECONDS each, default 60: first pods replaced on the same node, which the
// planner's filter drops, then pods moved to another node, which re-plan). Run with
// `make bench-scale` (IRONLB_SCALE_NODES, IRONLB_SCALE_SERVICES: default 50 and 5,000;
// IRONLB_SCALE_SYNC_MINUTES, default 20, bounds the wait for the initial sync).
//
// Simulated nodes: Node objects whose InternalIP is a loopback address (127.0.1.N) where that
// node's speaker runs its memberlist, so the speakers elect and gossip for real; no kubelet.
// Each speaker renews its Lease in ironlb-system, as the chart's do. Each Service has ready
// endpoints (an EndpointSlice) and an ingress IP set as the controller would. The one BGPPeer
// is 127.0.0.1 on a port nothing listens on: GoBGP runs and keeps its paths, the sessions stay
// down, and no packet leaves the host. Forwarding is off (no nftables: BenchmarkOneChange
// measures its per-change cost).
//
// What the benchmark itself asks of the API server is kept small, so that it measures the
// speakers: Services are created by 16 workers; the status objects are counted from a watch
// (one LIST from the watch cache, then events), never by polling LISTs; a speaker's metrics
// are scraped until it reached what a phase waits for, 8 at a time, once a second.
func BenchmarkScale(b *testing.B) {
	nodes, services := envInt("IRONLB_SCALE_NODES", 50), envInt("IRONLB_SCALE_SERVICES", 5000)
	churn := time.Duration(envInt("IRONLB_SCALE_CHURN_SECONDS", 60)) * time.Second
	for range b.N {
		benchScale(b, nodes, services, churn)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// speakerProc is one speaker process.
type speakerProc struct {
	cmd     *exec.Cmd
	metrics string
}

func benchScale(b *testing.B, nodes, services int, churn time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir := b.TempDir()
	bin := filepath.Join(dir, "ironlb-speaker")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ironlb-speaker").CombinedOutput(); err != nil {
		b.Fatalf("building the speaker: %v\n%s", err, out)
	}
	srv, err := apiserver.Start(ctx, apiserver.Options{Dir: filepath.Join(dir, "api"), CRDDir: "../charts/ironlb/crds"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	c, err := kubeclient.New(srv.Config, kubeclient.Limits{QPS: -1}, kubeclient.Limits{QPS: -1})
	if err != nil {
		b.Fatal(err)
	}
	const ns, system = "scale", "ironlb-system"
	for _, name := range []string{ns, system} {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	post := func(resource string, obj any) {
		b.Helper()
		if err := c.CRD.Post().Resource(resource).Body(obj).Do(ctx).Error(); err != nil {
			b.Fatal(err)
		}
	}
	post("bgppeers", &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: v1alpha1.BGPPeerSpec{PeerAddress: "127.0.0.1", PeerPort: 1, PeerASN: 64496, MyASN: 64497}})
	post("ippools", &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.19.0.0/16"}}})
	post("bgpadvertisements", &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"routed"}}})
	parallel(b, nodes, 16, func(i int) error {
		n, err := c.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i + 1)}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("127.0.1.%d", i+1)}}
		_, err = c.Kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	start := time.Now()
	parallel(b, services, 16, func(i int) error { return createService(ctx, c, ns, i) })
	b.Logf("%d Services with endpoints and ingress IPs created in %s", services, time.Since(start).Round(time.Second))

	// The status objects, from a watch.
	count := map[string]func() int{}
	for _, resource := range []string{"serviceannouncements", "bgpsessionstates"} {
		obj := runtime.Object(&v1alpha1.ServiceAnnouncement{})
		if resource == "bgpsessionstates" {
			obj = &v1alpha1.BGPSessionState{}
		}
		inf := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(c.CRD, resource, metav1.NamespaceAll, fields.Everything()), obj, 0, cache.Indexers{})
		go inf.Run(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			b.Fatalf("watching %s", resource)
		}
		count[resource] = func() int { return len(inf.GetStore().ListKeys()) }
	}
	objects := func() string {
		return fmt.Sprintf("%d ServiceAnnouncements, %d BGPSessionStates", count["serviceannouncements"](), count["bgpsessionstates"]())
	}

	// The speakers.
	var procs []speakerProc
	for i := 1; i <= nodes; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 19000+i)
		cmd := exec.Command(bin, "--kubeconfig="+srv.Kubeconfig, "--node-name="+nodeName(i), "--namespace="+system, "--forwarding=off",
			"--metrics-addr="+addr, "--memberlist-port=17946", "--log-level=warn")
		logf, err := os.Create(filepath.Join(dir, nodeName(i)+".log"))
		if err != nil {
			b.Fatal(err)
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// The speakers run at nice 19, below the API server and etcd: in a cluster they run on
		// their own nodes, not on the control plane's CPU. Fifty of them at the API server's
		// priority starved it on 2 cores (their lists of 5,000 Services timed out), and at nice
		// 10 they still had about three quarters of the CPU between them (weights 50 x 110
		// against 2 x 1024). Their CPU time is counted all the same.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 19); err != nil {
			b.Fatal(err)
		}
		procs = append(procs, speakerProc{cmd, "http://" + addr + "/metrics"})
	}
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Signal(os.Interrupt)
		}
		for _, p := range procs {
			_ = p.cmd.Wait()
		}
	}()
	writes := func() map[string]float64 { return apiWrites(ctx, c) }
	cpu := func() []float64 { return cpuTimes(len(procs), func(i int) int { return procs[i].cmd.Process.Pid }) }
	// RSS and the anonymous part of it (heap, stacks: what grows with the cluster); the rest is
	// mostly the binary's pages, shared by every process that runs it.
	rss := func(field string) []float64 {
		var out []float64
		for _, p := range procs {
			out = append(out, rssMiB(p.cmd.Process.Pid, field))
		}
		return out
	}
	memory := func() (all, anon []float64, text string) {
		all, anon = rss("VmRSS"), rss("RssAnon")
		return all, anon, fmt.Sprintf("RSS MiB %s, anonymous %s", stats(all), stats(anon))
	}

	start = time.Now()
	allPaths := everySpeaker(procs, "ironlb_speaker_bgp_paths", float64(services))
	eventually(b, ctx, time.Duration(envInt("IRONLB_SCALE_SYNC_MINUTES", 20))*time.Minute, time.Second, "every speaker announcing every Service", func() (bool, string) {
		if ok, msg := allPaths(); !ok {
			return false, msg
		}
		n := count["serviceannouncements"]()
		return n == services, fmt.Sprintf("%d ServiceAnnouncements", n)
	})
	synced := time.Since(start)
	time.Sleep(10 * time.Second) // the last status writes
	initial := writes()
	b.Logf("initial sync: every speaker announced %d Services %s after the speakers started; API objects: %s; API writes: %v",
		services, synced.Round(time.Second), objects(), initial)

	// At rest.
	const rest = 30 * time.Second
	cpu0, plans0 := cpu(), planTimes(procs)
	time.Sleep(rest)
	cpu1 := cpu()
	atRest := diff(writes(), initial)
	rssRest, anonRest, memText := memory()
	b.Logf("at rest for %s: API writes %v; speaker CPU-s/s %s; %s; %s", rest, atRest, stats(perSecond(sub(cpu1, cpu0), rest)),
		planTimes(procs).since(plans0), memText)

	// One new Service.
	before := writes()
	t0 := time.Now()
	if err := createService(ctx, c, ns, services); err != nil {
		b.Fatal(err)
	}
	allPaths = everySpeaker(procs, "ironlb_speaker_bgp_paths", float64(services+1))
	eventually(b, ctx, 2*time.Minute, 100*time.Millisecond, "every speaker announcing the new Service", allPaths)
	applied := time.Since(t0)
	eventually(b, ctx, time.Minute, 100*time.Millisecond, "its ServiceAnnouncement", func() (bool, string) {
		n := count["serviceannouncements"]()
		return n == services+1, fmt.Sprint(n)
	})
	time.Sleep(10 * time.Second)
	change := diff(writes(), before)
	b.Logf("one new Service: every speaker announced it %s after its create; API objects: %s; API writes %v",
		applied.Round(time.Millisecond), objects(), change)

	// 10 endpoint changes/s: pods replaced on the same node, then moved to another node.
	var churnCPU [2][]float64
	var churnRSS, churnAnon []float64
	for phase, move := range []bool{false, true} {
		what := map[bool]string{false: "pods replaced on the same node", true: "pods moved to another node"}[move]
		before, c0, p0 := writes(), cpu(), planTimes(procs)
		n := churnEndpoints(ctx, b, c, ns, services, churn, move)
		c1 := cpu()
		churnCPU[phase] = perSecond(sub(c1, c0), churn)
		churnRSS, churnAnon, memText = memory()
		b.Logf("10 endpoint changes/s for %s (%s, %d changes): API writes %v; speaker CPU-s/s %s; %s; %s",
			churn, what, n, diff(writes(), before), stats(churnCPU[phase]), planTimes(procs).since(p0), memText)
	}

	b.ReportMetric(synced.Seconds(), "initial-sync-s")
	b.ReportMetric(initial["serviceannouncements"], "initial-svcann-writes")
	b.ReportMetric(applied.Seconds(), "change-to-all-applied-s")
	b.ReportMetric(change["serviceannouncements"], "change-svcann-writes")
	b.ReportMetric(meanOf(perSecond(sub(cpu1, cpu0), rest)), "rest-cpu-s/s")
	b.ReportMetric(meanOf(churnCPU[0]), "churn-same-node-cpu-s/s")
	b.ReportMetric(meanOf(churnCPU[1]), "churn-other-node-cpu-s/s")
	b.ReportMetric(maxOf(rssRest), "rest-max-rss-MiB")
	b.ReportMetric(maxOf(churnRSS), "churn-max-rss-MiB")
	b.ReportMetric(maxOf(anonRest), "rest-max-anon-MiB")
	b.ReportMetric(maxOf(churnAnon), "churn-max-anon-MiB")
}

// churnEndpoints changes one Service's EndpointSlice every 100 ms for d, round robin: its
// endpoint gets a new address (a pod replaced), on the other of node-001 and node-002 when
// move is set. Each change is one merge patch, sent on its tick whatever the latency of the
// ones before. It returns the number of changes made.
func churnEndpoints(ctx context.Context, b *testing.B, c *kubeclient.Clients, ns string, services int, d time.Duration, move bool) int {
	b.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var wg sync.WaitGroup
	var failed atomic.Int64
	end := time.Now().Add(d)
	n := 0
	for ; time.Now().Before(end); n++ {
		i, round := n%services, n/services
		node := nodeName(1)
		if move && round%2 == 0 {
			node = nodeName(2)
		}
		patch := fmt.Sprintf(`{"endpoints":[{"addresses":["192.0.2.%d"],"nodeName":%q,"conditions":{"ready":true}}]}`, 11+round%200, node)
		wg.Go(func() {
			if _, err := c.Kube.DiscoveryV1().EndpointSlices(ns).Patch(ctx, fmt.Sprintf("svc-%05d-1", i), types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				failed.Add(1)
			}
		})
		select {
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		case <-tick.C:
		}
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d endpoint changes failed", f, n)
	}
	return n
}

// plans is each speaker's count and total time of syncs (ironlb_speaker_plan_duration_seconds).
type plans struct{ count, sum []float64 }

// planTimes scrapes every speaker's sync count and time, 8 at a time.
func planTimes(procs []speakerProc) plans {
	p := plans{make([]float64, len(procs)), make([]float64, len(procs))}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, proc := range procs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p.count[i] = scrape(proc.metrics, "ironlb_speaker_plan_duration_seconds_count")
			p.sum[i] = scrape(proc.metrics, "ironlb_speaker_plan_duration_seconds_sum")
		})
	}
	wg.Wait()
	return p
}

// since says how many syncs each speaker ran since before, and their mean time.
func (p plans) since(before plans) string {
	n, t := sub(p.count, before.count), sub(p.sum, before.sum)
	mean := make([]float64, len(n))
	for i := range n {
		if n[i] > 0 {
			mean[i] = t[i] / n[i] * 1000
		}
	}
	return fmt.Sprintf("syncs per speaker %s, mean sync ms %s", stats(n), stats(mean))
}

// everySpeaker returns a check that every speaker's metric name has value want. It scrapes, 8
// at a time, the speakers that have not had it yet: once one has, it is not asked again.
func everySpeaker(procs []speakerProc, name string, want float64) func() (bool, string) {
	done := make([]bool, len(procs))
	return func() (bool, string) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i, p := range procs {
			if done[i] {
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				done[i] = scrape(p.metrics, name) == want
			})
		}
		wg.Wait()
		short := 0
		for _, d := range done {
			if !d {
				short++
			}
		}
		return short == 0, fmt.Sprintf("%d of %d speakers without %s %v", short, len(procs), name, want)
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%03d", i) }

// createService creates Service i with an ingress IP (as the controller writes it) and a ready
// endpoint on node-001.
func createService(ctx context.Context, c *kubeclient.Clients, ns string, i int) error {
	name := fmt.Sprintf("svc-%05d", i)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr(false),
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
	}}
	svc, err := c.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: fmt.Sprintf("198.19.%d.%d", i/250, i%250+1)}}
	if _, err := c.Kube.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return err
	}
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, NodeName: ptr(nodeName(1)), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
	_, err = c.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, sl, metav1.CreateOptions{})
	return err
}

func parallel(b *testing.B, n, workers int, f func(int) error) {
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func eventually(b *testing.B, ctx context.Context, timeout, every time.Duration, what string, f func() (bool, string)) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	msg := ""
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var ok bool
		if ok, msg = f(); ok {
			return
		}
		time.Sleep(every)
	}
	b.Fatalf("%s: not within %s: %s", what, timeout, msg)
}

// scrape returns the value of an unlabelled metric, -1 when it cannot be read.
func scrape(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// apiWrites returns the API server's count of write requests (create, update, patch, delete)
// per resource of ironlb's status kinds and of Leases (the speakers' renewals), and per
// resource and verb ("serviceannouncements/DELETE"), from its own metrics.
func apiWrites(ctx context.Context, c *kubeclient.Clients) map[string]float64 {
	raw, err := c.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	out := map[string]float64{}
	if err != nil {
		return out
	}
	for line := range bytes.Lines(raw) {
		s := string(bytes.TrimSpace(line))
		if !strings.HasPrefix(s, "apiserver_request_total{") {
			continue
		}
		for _, res := range []string{"serviceannouncements", "bgpsessionstates", "leases"} {
			if !strings.Contains(s, `resource="`+res+`"`) {
				continue
			}
			for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE"} {
				if strings.Contains(s, `verb="`+verb+`"`) {
					f, _ := strconv.ParseFloat(s[strings.LastIndexByte(s, ' ')+1:], 64)
					out[res] += f
					out[res+"/"+verb] += f
				}
			}
		}
	}
	return out
}

func diff(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	return out
}

// cpuTimes returns each process's user+system CPU seconds.
func cpuTimes(n int, pid func(int) int) []float64 {
	out := make([]float64, n)
	for i := range n {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid(i)))
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out[i] = (ut + st) / 100 // USER_HZ
	}
	return out
}

// rssMiB reads a field of /proc/<pid>/status in kB (VmRSS, RssAnon) and returns it in MiB.
func rssMiB(pid int, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

func sub(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

func perSecond(v []float64, d time.Duration) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x / d.Seconds()
	}
	return out
}

func meanOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func stats(v []float64) string {
	return fmt.Sprintf("mean %.3f max %.3f (n=%d)", meanOf(v), maxOf(v), len(v))
}
