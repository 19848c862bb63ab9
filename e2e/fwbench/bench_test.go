package fwbench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/e2e/lab"
	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// The benchmark's network: an API server namespace with a bridge, and one node namespace for
// each data plane. Its names start with nsPrefix (not the lab's "ilb-": it runs beside no lab).
const (
	nsPrefix = "ilbfw-"
	nsAPI    = nsPrefix + "api"
	nsIronLB = nsPrefix + "ironlb"
	nsKP     = nsPrefix + "kube-proxy"
	apiAddr  = "192.0.2.1"
	benchNS  = "bench"
)

var nodes = []struct{ ns, name, addr string }{
	{nsIronLB, "node-ironlb", "192.0.2.2"},
	{nsKP, "node-kube-proxy", "192.0.2.3"},
}

// settings are the benchmark's sizes; FWBENCH_SERVICES, FWBENCH_CHURN and FWBENCH_RATE change
// them (a shorter churn for a quick look).
type settings struct {
	services, endpoints int
	rate                int // endpoint changes per second
	churn               time.Duration
}

func settingsFromEnv(b *testing.B) settings {
	s := settings{services: 10000, endpoints: 5, rate: 10, churn: 5 * time.Minute}
	if v := os.Getenv("FWBENCH_SERVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 12000 {
			b.Fatalf("FWBENCH_SERVICES=%q: want 1 to 12000", v)
		}
		s.services = n
	}
	if v := os.Getenv("FWBENCH_CHURN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second || d > 30*time.Minute {
			b.Fatalf("FWBENCH_CHURN=%q: want a duration from 10s to 30m", v)
		}
		s.churn = d
	}
	if v := os.Getenv("FWBENCH_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			b.Fatalf("FWBENCH_RATE=%q: want 1 to 50", v)
		}
		s.rate = n
	}
	return s
}

// BenchmarkForwardVsKubeProxy: the same API server holds N ClusterIP Services with 5 ready
// endpoints each (10,000 by default); an ironlb speaker (the chart's default arguments,
// --forwarding=auto finds no kube-proxy in its namespace) starts in its node namespace and
// then a kube-proxy v1.37.1 in nftables mode (its defaults) in another. Measured: the time from
// exec to the first successful sync of each (both wait for their caches to hold every Service
// and EndpointSlice first); then, for FWBENCH_CHURN (5 minutes) of 10 endpoint changes per
// second (each replaces one endpoint of a different Service by a new address, with the
// EndpointSlice controller's trigger-time annotation), the time from the API write to the new
// address appearing in each table (nft monitor in each namespace), and each process's CPU time
// (its own and its nft children's) and peak RSS over the churn.
func BenchmarkForwardVsKubeProxy(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root (network namespaces, nftables)")
	}
	set := settingsFromEnv(b)
	for b.Loop() {
		runBench(b, set)
	}
}

func runBench(b *testing.B, set settings) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	dir := b.TempDir()
	load0 := loadavg()
	b.Logf("load average at start: %s", load0)
	setupNetwork(b, ctx)
	srv, err := apiserver.Start(ctx, apiserver.Options{
		Dir: filepath.Join(dir, "api"), Address: netip.MustParseAddr(apiAddr), SecurePort: 6443, EtcdPort: 2379, EtcdPeerPort: 2380,
		ExecPrefix: []string{"ip", "netns", "exec", nsAPI}, CRDDir: "../../charts/ironlb/crds",
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) { return lab.DialIn(ctx, nsAPI, addr) },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	cfg := *srv.Config
	cfg.QPS, cfg.Burst = -1, 0
	cfg.ContentType = "application/vnd.kubernetes.protobuf" // the fixtures' writes cost the API server less
	kube, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	createNodes(b, ctx, kube)
	start := time.Now()
	slicesByIndex := createServices(b, ctx, kube, set)
	b.Logf("%d Services and EndpointSlices created in %v", set.services, time.Since(start).Round(time.Millisecond))

	speaker := startSpeaker(b, ctx, dir, srv.Kubeconfig)
	ilbFirst := waitFirstSync(b, ctx, speaker, nsIronLB, "http://127.0.0.1:7473/metrics", "ironlb_speaker_forwarding_last_sync_timestamp_seconds")
	ilbFrontends := countLines(b, nsIronLB, "goto pick-", "list", "map", "inet", "ironlb", "frontends-v4")
	b.Logf("ironlb: first full programming %.2f s after exec (%d frontends)", ilbFirst.Seconds(), ilbFrontends)
	kp := startKubeProxy(b, ctx, dir, srv.Kubeconfig)
	kpFirst := waitFirstSync(b, ctx, kp, nsKP, "http://127.0.0.1:10249/metrics", "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
	kpServices := countLines(b, nsKP, "goto service-", "list", "map", "ip", "kube-proxy", "service-ips")
	b.Logf("kube-proxy: first full programming %.2f s after exec (%d service-ips)", kpFirst.Seconds(), kpServices)
	if ilbFrontends < set.services || kpServices < set.services {
		b.Fatalf("first programming incomplete: ironlb %d frontends, kube-proxy %d service-ips; want %d", ilbFrontends, kpServices, set.services)
	}

	// Churn.
	watch := newWatcher()
	for _, ns := range []string{nsIronLB, nsKP} {
		watch.monitor(b, ns)
	}
	procs := []*proc{speaker, kp}
	for _, p := range procs {
		p.resetPeak(b)
		p.cpu0 = p.cpuTime(b)
	}
	loadBefore := loadavg()
	sent := churn(b, ctx, kube, set, slicesByIndex, watch)
	deadline := time.Now().Add(15 * time.Second)
	for watch.pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	loadAfter := loadavg()
	for _, m := range []struct{ ns, url, prefix string }{
		{nsIronLB, "http://127.0.0.1:7473/metrics", "ironlb_speaker_forwarding_"},
		{nsKP, "http://127.0.0.1:10249/metrics", "kubeproxy_"},
	} {
		b.Logf("%s metrics after the churn:\n%s\n%s", m.ns, metricLines(ctx, m.ns, m.url, m.prefix, "_count", "_sum"),
			metricLines(ctx, m.ns, m.url, "go_memstats_heap_", "_bytes")) // what RSS holds: live heap, or pages not given back yet
	}
	res := map[string]result{}
	for i, ns := range []string{nsIronLB, nsKP} {
		p := procs[i]
		r := result{lat: watch.latencies(ns), cpu: p.cpuTime(b) - p.cpu0, peak: p.peakRSS(b), lifePeak: p.lifePeak}
		r.missing = sent - len(r.lat)
		res[ns] = r
	}
	ilb, kpr := res[nsIronLB], res[nsKP]
	report := func(name string, first time.Duration, r result) {
		b.Logf("%-10s first programming %6.2f s | change latency p50 %6.1f ms p99 %6.1f ms max %6.1f ms (%d changes, %d not seen) | CPU %6.2f s over %v | peak RSS %6.1f MiB during churn, %6.1f MiB since exec",
			name, first.Seconds(), ms(r.quantile(0.5)), ms(r.quantile(0.99)), ms(r.quantile(1)), len(r.lat), r.missing, r.cpu.Seconds(), set.churn, mib(r.peak), mib(r.lifePeak))
	}
	b.Logf("%d Services x %d endpoints, %d changes/s for %v (%d sent); load average before the churn %s, after %s",
		set.services, set.endpoints, set.rate, set.churn, sent, loadBefore, loadAfter)
	report("ironlb", ilbFirst, ilb)
	report("kube-proxy", kpFirst, kpr)
	b.ReportMetric(ilbFirst.Seconds(), "ironlb-first-s")
	b.ReportMetric(kpFirst.Seconds(), "kube-proxy-first-s")
	b.ReportMetric(ms(ilb.quantile(0.5)), "ironlb-p50-ms")
	b.ReportMetric(ms(ilb.quantile(0.99)), "ironlb-p99-ms")
	b.ReportMetric(ms(kpr.quantile(0.5)), "kube-proxy-p50-ms")
	b.ReportMetric(ms(kpr.quantile(0.99)), "kube-proxy-p99-ms")
	b.ReportMetric(ilb.cpu.Seconds(), "ironlb-cpu-s")
	b.ReportMetric(kpr.cpu.Seconds(), "kube-proxy-cpu-s")
	b.ReportMetric(mib(ilb.peak), "ironlb-peak-MiB")
	b.ReportMetric(mib(kpr.peak), "kube-proxy-peak-MiB")
	if ilb.missing > sent/100 || kpr.missing > sent/100 {
		b.Errorf("changes never seen in the table: ironlb %d, kube-proxy %d of %d", ilb.missing, kpr.missing, sent)
	}
}

type result struct {
	lat            []time.Duration // sorted
	missing        int
	cpu            time.Duration
	peak, lifePeak int64
}

func (r result) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.5) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func mib(n int64) float64        { return float64(n) / (1 << 20) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func run(b *testing.B, ctx context.Context, argv ...string) string {
	b.Helper()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// setupNetwork makes the namespaces: the API server's with a bridge, and a node namespace per
// data plane on it. What an earlier run left is removed first.
func setupNetwork(b *testing.B, ctx context.Context) {
	removeNamespaces(ctx)
	b.Cleanup(func() { removeNamespaces(context.Background()) })
	run(b, ctx, "ip", "netns", "add", nsAPI)
	run(b, ctx, "ip", "-n", nsAPI, "link", "set", "lo", "up")
	run(b, ctx, "ip", "-n", nsAPI, "link", "add", "br0", "type", "bridge")
	run(b, ctx, "ip", "-n", nsAPI, "addr", "add", apiAddr+"/24", "dev", "br0")
	run(b, ctx, "ip", "-n", nsAPI, "link", "set", "br0", "up")
	for i, n := range nodes {
		port := fmt.Sprintf("node%d", i)
		run(b, ctx, "ip", "netns", "add", n.ns)
		run(b, ctx, "ip", "-n", nsAPI, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
		run(b, ctx, "ip", "-n", nsAPI, "link", "set", port, "master", "br0", "up")
		run(b, ctx, "ip", "-n", n.ns, "link", "set", "lo", "up")
		run(b, ctx, "ip", "-n", n.ns, "addr", "add", n.addr+"/24", "dev", "eth0")
		run(b, ctx, "ip", "-n", n.ns, "link", "set", "eth0", "up")
		run(b, ctx, "ip", "-n", n.ns, "route", "add", "default", "via", apiAddr)
	}
}

func removeNamespaces(ctx context.Context) {
	out, _ := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			_ = exec.CommandContext(ctx, "ip", "netns", "delete", f[0]).Run()
		}
	}
}

func createNodes(b *testing.B, ctx context.Context, kube kubernetes.Interface) {
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes {
		node, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name,
			Labels: map[string]string{corev1.LabelHostname: n.name}}}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.addr}, {Type: corev1.NodeHostName, Address: n.name}}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// endpointAddr returns the k-th pod address: 198.19.0.0 + k.
func endpointAddr(k int) string { return fmt.Sprintf("198.19.%d.%d", k>>8&255, k&255) }

// createServices creates the Services and their EndpointSlices with 16 clients and returns
// the slices by Service index.
func createServices(b *testing.B, ctx context.Context, kube kubernetes.Interface, set settings) []*discoveryv1.EndpointSlice {
	out := make([]*discoveryv1.EndpointSlice, set.services)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Go(func() {
			for i := range work {
				name := fmt.Sprintf("svc-%05d", i)
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
				s := &discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Namespace: benchNS, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "fwbench"}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
				}
				for j := range set.endpoints {
					s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{endpointAddr(i*set.endpoints + j)},
						Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
						NodeName:   ptr.To("node-elsewhere")})
				}
				_, err := kube.CoreV1().Services(benchNS).Create(ctx, svc, metav1.CreateOptions{})
				if err == nil {
					s, err = kube.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, s, metav1.CreateOptions{})
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out[i] = s
				mu.Unlock()
			}
		})
	}
	for i := range set.services {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("creating Services: %v", firstErr)
	}
	return out
}

// proc is a data plane process.
type proc struct {
	name     string
	cmd      *exec.Cmd
	start    time.Time
	cpu0     time.Duration
	lifePeak int64
}

func startProc(b *testing.B, ctx context.Context, dir, name, ns string, argv ...string) *proc {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, start: time.Now()}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		logf.Close()
		if b.Failed() {
			if tail, err := os.ReadFile(logf.Name()); err == nil {
				b.Logf("%s log (last 3000 bytes):\n%s", name, tail[max(0, len(tail)-3000):])
			}
		}
	})
	return p
}

// speakerArgs returns the speaker container's arguments from the chart with its default values.
func speakerArgs(b *testing.B) []string {
	out, err := exec.Command(filepath.Join(goBin(), "helm"), "template", "ironlb", "../../charts/ironlb", "--namespace", "ironlb-system").Output()
	if err != nil {
		b.Fatalf("helm template: %v", err)
	}
	for _, doc := range bytes.Split(out, []byte("\n---")) {
		var d appsv1.DaemonSet
		if yaml.Unmarshal(doc, &d) != nil || d.Kind != "DaemonSet" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "speaker" || strings.Contains(c.Image, "ironlb-speaker") {
				return c.Args
			}
		}
	}
	b.Fatal("no speaker DaemonSet in the chart")
	return nil
}

func goBin() string {
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		return filepath.Join(strings.TrimSpace(string(out)), "bin")
	}
	return filepath.Join(os.Getenv("HOME"), "go", "bin")
}

// startSpeaker builds cmd/ironlb-speaker and runs it in its node namespace with the chart's
// arguments; the memberlist key file is a fresh key (the chart mounts a Secret there), and
// --kubeconfig and --node-name stand for the Pod's in-cluster configuration and NODE_NAME.
func startSpeaker(b *testing.B, ctx context.Context, dir, kubeconfig string) *proc {
	bin := filepath.Join(dir, "ironlb-speaker")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ironlb-speaker").CombinedOutput(); err != nil {
		b.Fatalf("building the speaker: %v\n%s", err, out)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(dir, "memberlist.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		b.Fatal(err)
	}
	var args []string
	for _, a := range speakerArgs(b) {
		if strings.HasPrefix(a, "--memberlist-key-file=") {
			a = "--memberlist-key-file=" + keyFile
		}
		args = append(args, a)
	}
	args = append(args, "--kubeconfig="+kubeconfig, "--node-name="+nodes[0].name)
	b.Logf("speaker arguments: %q", args)
	return startProc(b, ctx, dir, "ironlb-speaker", nsIronLB, append([]string{bin}, args...)...)
}

// startKubeProxy runs kube-proxy v1.37.1 in nftables mode with its defaults; as in the lab, it
// leaves conntrack's table size (a sysctl of the whole machine) alone.
func startKubeProxy(b *testing.B, ctx context.Context, dir, kubeconfig string) *proc {
	conf := filepath.Join(dir, "kube-proxy.yaml")
	if err := os.WriteFile(conf, []byte(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: `+kubeconfig+`
hostnameOverride: `+nodes[1].name+`
mode: nftables
clusterCIDR: 198.19.0.0/16
conntrack:
  maxPerCore: 0
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(apiserver.BinDir(apiserver.DefaultKubeVersion), "kube-proxy")
	return startProc(b, ctx, dir, "kube-proxy", nsKP, bin, "--config="+conf, "--v=1")
}

// waitFirstSync polls a metrics endpoint until the last-sync timestamp metric is set and
// returns the time from exec to that sync.
func waitFirstSync(b *testing.B, ctx context.Context, p *proc, ns, url, metric string) time.Duration {
	deadline := time.Now().Add(10 * time.Minute)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return lab.DialIn(ctx, ns, addr) }}}
	for time.Now().Before(deadline) {
		if p.cmd.ProcessState != nil {
			b.Fatalf("%s exited", p.name)
		}
		if v, ok := scrape(ctx, client, url, metric); ok && v > 0 {
			sec := int64(v)
			at := time.Unix(sec, int64((v-float64(sec))*1e9))
			return at.Sub(p.start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("%s: no sync within 10 minutes", p.name)
	return 0
}

func scrape(ctx context.Context, client *http.Client, url, metric string) (float64, bool) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// kube-proxy has one proxier per family: the IPv4 one programs the Services here.
		rest, ok := strings.CutPrefix(line, metric+" ")
		if !ok && strings.HasPrefix(line, metric+`{ip_family="IPv4"} `) {
			rest, ok = strings.CutPrefix(line, metric+`{ip_family="IPv4"} `)
		}
		if ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// countLines counts the lines of an nft listing in ns that contain substr.
func countLines(b *testing.B, ns, substr string, args ...string) int {
	out, err := lab.Exec(context.Background(), ns, append([]string{"nft"}, args...)...)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		n += strings.Count(l, substr)
	}
	return n
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// cpuTime returns the process's user and system time, its waited-for children's included (the
// nft runs of both data planes).
func (p *proc) cpuTime(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime (fields 14-17)
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

func (p *proc) status(b *testing.B, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, p.pid())
	return 0
}

// resetPeak remembers the peak RSS since exec and resets it (clear_refs 5).
func (p *proc) resetPeak(b *testing.B) {
	p.lifePeak = p.status(b, "VmHWM")
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid()), []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
}

func (p *proc) peakRSS(b *testing.B) int64 { return p.status(b, "VmHWM") }

// watcher matches new endpoint addresses written to the API server with their appearance in
// each namespace's table (nft monitor).
type watcher struct {
	mu   sync.Mutex
	sent map[string]time.Time
	seen map[string]map[string]time.Duration // ns -> address -> latency
}

func newWatcher() *watcher {
	return &watcher{sent: map[string]time.Time{}, seen: map[string]map[string]time.Duration{}}
}

// monitor listens to nftables' netlink notifications in ns (what nft monitor shows, without
// its cache refreshes, which take seconds per event on tables this size) and records the first
// message carrying each expected address: as 4 bytes (a set element, a rule's operand) or as
// text (kube-proxy's endpoint chain names).
func (w *watcher) monitor(b *testing.B, ns string) {
	w.seen[ns] = map[string]time.Duration{}
	var fd int
	err := lab.InNetNS(ns, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)})
	})
	if err != nil {
		b.Fatalf("nftables notifications in %s: %v", ns, err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	go w.read(ns, fd)
}

func (w *watcher) read(ns string, fd int) {
	buf := make([]byte, 1<<20)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.ENOBUFS {
			continue
		}
		if err != nil {
			return
		}
		now := time.Now()
		msg := buf[:n]
		var found []string
		for i := bytes.Index(msg, []byte{198, 19}); i >= 0 && i+4 <= len(msg); {
			found = append(found, fmt.Sprintf("198.19.%d.%d", msg[i+2], msg[i+3]))
			k := bytes.Index(msg[i+1:], []byte{198, 19})
			if k < 0 {
				break
			}
			i += 1 + k
		}
		for i := bytes.Index(msg, []byte("198.19.")); i >= 0; {
			j := i + len("198.19.")
			for j < len(msg) && (msg[j] == '.' || msg[j] >= '0' && msg[j] <= '9') {
				j++
			}
			found = append(found, string(msg[i:j]))
			k := bytes.Index(msg[j:], []byte("198.19."))
			if k < 0 {
				break
			}
			i = j + k
		}
		w.mu.Lock()
		for _, addr := range found {
			if t, ok := w.sent[addr]; ok {
				if _, dup := w.seen[ns][addr]; !dup {
					w.seen[ns][addr] = now.Sub(t)
				}
			}
		}
		w.mu.Unlock()
	}
}

func (w *watcher) expect(addr string, at time.Time) {
	w.mu.Lock()
	w.sent[addr] = at
	w.mu.Unlock()
}

func (w *watcher) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, seen := range w.seen {
		n += len(w.sent) - len(seen)
	}
	return n
}

func (w *watcher) latencies(ns string) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for _, d := range w.seen[ns] {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// churn changes set.rate endpoints per second for set.churn: each change replaces one endpoint
// of a Service not changed before by a new address, with the trigger-time annotation the
// EndpointSlice controller writes. It returns the number of changes written.
func churn(b *testing.B, ctx context.Context, kube kubernetes.Interface, set settings, bySvc []*discoveryv1.EndpointSlice, w *watcher) int {
	total := int(set.churn.Seconds()) * set.rate
	if total > set.services {
		total = set.services // a Service changes once at most: no write conflicts
	}
	order := make([]int, set.services)
	for i := range order {
		order[i] = i
	}
	for i := len(order) - 1; i > 0; i-- { // Fisher-Yates with crypto/rand: a fresh order per run
		var r [4]byte
		_, _ = rand.Read(r[:])
		j := int(uint32(r[0])<<24|uint32(r[1])<<16|uint32(r[2])<<8|uint32(r[3])) % (i + 1)
		order[i], order[j] = order[j], order[i]
	}
	work := make(chan int, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs int
	for range 8 {
		wg.Go(func() {
			for n := range work {
				i := order[n]
				s := bySvc[i].DeepCopy()
				addr := endpointAddr(set.services*set.endpoints + n)
				s.Endpoints[n%set.endpoints].Addresses = []string{addr}
				now := time.Now()
				if s.Annotations == nil {
					s.Annotations = map[string]string{}
				}
				s.Annotations["endpoints.kubernetes.io/last-change-trigger-time"] = now.UTC().Format(time.RFC3339Nano)
				w.expect(addr, now)
				if _, err := kube.DiscoveryV1().EndpointSlices(benchNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
					mu.Lock()
					errs++
					mu.Unlock()
				}
			}
		})
	}
	tick := time.NewTicker(time.Second / time.Duration(set.rate))
	for n := range total {
		<-tick.C
		work <- n
	}
	tick.Stop()
	close(work)
	wg.Wait()
	if errs > 0 {
		b.Fatalf("%d of %d EndpointSlice updates failed", errs, total)
	}
	return total
}

// metricLines returns the lines of a metrics page with the prefix and one of the suffixes.
func metricLines(ctx context.Context, ns, url, prefix string, suffixes ...string) string {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return lab.DialIn(ctx, ns, addr) }}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		name := strings.Fields(l)[0]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		for _, suf := range suffixes {
			if strings.HasSuffix(name, suf) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
