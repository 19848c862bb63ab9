package controller

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// BenchmarkBurst measures what an operator sees when thousands of LoadBalancer Services arrive
// at once (a GitOps sync, a restore): the ironlb-controller binary, started with exactly the
// arguments the chart renders by default (only --kubeconfig and a loopback metrics address are
// added: it runs outside a Pod), against a real kube-apiserver; 16 clients create the Services.
// Then the controller restarts with all of them allocated. Run with `make bench-burst`.
func BenchmarkBurst(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "ironlb-controller")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ironlb-controller").CombinedOutput(); err != nil {
		b.Fatalf("building the controller: %v\n%s", err, out)
	}
	args := chartControllerArgs(b)
	b.Logf("controller arguments from the chart: %q", args)
	for i, n := range []int{50, 500, 5000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for range b.N {
				benchBurst(b, bin, args, i, n)
			}
		})
	}
}

func benchBurst(b *testing.B, bin string, args []string, run, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("bench-burst-%d-%d", n, time.Now().UnixNano())
	if _, err := testEnv.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	crd, err := v1alpha1.NewRESTClient(testEnv.cfg)
	if err != nil {
		b.Fatal(err)
	}
	pool := &v1alpha1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1alpha1.IPPoolSpec{
			Addresses:  []string{fmt.Sprintf("198.19.%d.0/19", run*32)},
			Allocation: &v1alpha1.IPPoolAllocation{Namespaces: []string{ns}},
		},
	}
	if err := crd.Post().Resource("ippools").Body(pool).Do(ctx).Error(); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	p := startControllerProcess(b, bin, args, "bench-"+ns)
	p.waitMetric(b, "ironlb_controller_leader", func(v float64) bool { return v == 1 }, time.Minute)
	// The status writes are counted over 3 s more after the last IP arrived.
	r := runBurst(ctx, b, ns, n, time.Minute, 3*time.Second)
	if r.missing > 0 {
		b.Fatalf("%d of %d Services had no IP a minute after the last create", r.missing, n)
	}
	events := waitEventsSettled(ctx, b, ns)
	cpu, rss := p.usage(b)
	b.StopTimer()
	b.ReportMetric(r.create.Seconds(), "create-s")
	b.ReportMetric(float64(r.quantile(0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(r.quantile(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(r.quantile(1).Milliseconds()), "max-ms")
	b.ReportMetric(float64(r.afterLast.Milliseconds()), "all-after-last-ms")
	b.ReportMetric(float64(r.statusWrites)/float64(n), "status-writes/svc")
	b.ReportMetric(float64(events)/float64(n), "events/svc")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
	b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
	b.Logf("%d Services: %s; %.2f events per Service; controller CPU %.1f s, peak RSS %.1f MiB", n, r, float64(events)/float64(n), cpu.Seconds(), float64(rss)/(1<<20))

	// Restart with every Service allocated: time to ready and the writes it spends.
	p.stop(b)
	var poolBefore v1alpha1.IPPool
	if err := crd.Get().Resource("ippools").Name(ns).Do(ctx).Into(&poolBefore); err != nil {
		b.Fatal(err)
	}
	changes := countStatusChanges(b, ns)
	start := time.Now()
	p = startControllerProcess(b, bin, args, "restart-"+ns)
	synced := p.waitMetric(b, "ironlb_controller_initial_sync_seconds", func(v float64) bool { return v > 0 }, 5*time.Minute)
	ready := time.Since(start)
	// A quiet window after the sync: any write the restart causes lands in it.
	time.Sleep(2 * time.Second)
	var poolAfter v1alpha1.IPPool
	if err := crd.Get().Resource("ippools").Name(ns).Do(ctx).Into(&poolAfter); err != nil {
		b.Fatal(err)
	}
	restartWrites := changes()
	if poolAfter.ResourceVersion != poolBefore.ResourceVersion {
		restartWrites++
	}
	restartEvents := waitEventsSettled(ctx, b, ns) - events
	p.stop(b)
	b.ReportMetric(ready.Seconds(), "restart-ready-s")
	b.ReportMetric(float64(restartWrites+restartEvents), "restart-writes")
	b.Logf("restart with %d allocated: every Service reconciled %v after exec (%.3f s after winning the Lease), %d status writes, %d events",
		n, ready.Round(time.Millisecond), synced, restartWrites, restartEvents)
	b.StartTimer()
}

// chartControllerArgs renders the chart with its default values and returns the controller
// container's arguments.
func chartControllerArgs(tb testing.TB) []string {
	helm := filepath.Join(os.Getenv("HOME"), "go", "bin", "helm")
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		helm = filepath.Join(strings.TrimSpace(string(gp)), "bin", "helm")
	}
	out, err := exec.Command(helm, "template", "ironlb", "../charts/ironlb", "--namespace", "ironlb-system").Output()
	if err != nil {
		tb.Fatalf("helm template: %v", err)
	}
	for _, doc := range bytes.Split(out, []byte("\n---")) {
		var d appsv1.Deployment
		if yaml.Unmarshal(doc, &d) != nil || d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "controller" {
				return c.Args
			}
		}
	}
	tb.Fatal("no controller Deployment in the chart")
	return nil
}

// controllerProcess is an ironlb-controller binary running outside a Pod.
type controllerProcess struct {
	cmd      *exec.Cmd
	identity string // its POD_NAME, the Lease holder identity
	metrics  string
	done     chan struct{}
}

func startControllerProcess(tb testing.TB, bin string, chartArgs []string, identity string) *controllerProcess {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var args []string
	for _, a := range chartArgs {
		if !strings.HasPrefix(a, "--metrics-addr=") {
			args = append(args, a)
		}
	}
	args = append(args, "--metrics-addr="+addr, "--kubeconfig="+testEnv.kubeconfig)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE=ironlb-system", "POD_NAME="+identity)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &controllerProcess{cmd: cmd, identity: identity, metrics: "http://" + addr + "/metrics", done: make(chan struct{})}
	var warnings atomic.Int64
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if line := sc.Text(); strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
				if warnings.Add(1) <= 5 {
					tb.Logf("controller: %s", line)
				}
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

// waitMetric polls the process's /metrics until the named sample satisfies ok.
func (p *controllerProcess) waitMetric(tb testing.TB, name string, ok func(float64) bool, timeout time.Duration) float64 {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if v, found := p.metric(name); found && ok(v) {
			return v
		}
		select {
		case <-p.done:
			tb.Fatal("the controller exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
	tb.Fatalf("metric %s not reached within %v", name, timeout)
	return 0
}

func (p *controllerProcess) metric(name string) (float64, bool) {
	resp, err := http.Get(p.metrics)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// usage returns the process's CPU time so far and its peak resident set size.
func (p *controllerProcess) usage(tb testing.TB) (time.Duration, int64) {
	tb.Helper()
	pid := p.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	cpu := time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var rssKiB int64
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			rssKiB, _ = strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
	}
	return cpu, rssKiB << 10
}

func (p *controllerProcess) stop(tb testing.TB) {
	tb.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		tb.Fatal("the controller did not stop within 30 s of SIGTERM")
	}
}

// waitEventsSettled returns the number of events (counting aggregated repeats) on the
// namespace's Services once it has not changed for 3 s.
func waitEventsSettled(ctx context.Context, tb testing.TB, ns string) int {
	tb.Helper()
	last, stable := -1, time.Now()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		list, err := testEnv.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Service" {
				n += int(max(e.Count, 1))
			}
		}
		if n != last {
			last, stable = n, time.Now()
		} else if time.Since(stable) >= 3*time.Second {
			return n
		}
	}
	return last
}

// countStatusChanges watches the namespace's Services and returns a function that tells how
// many status changes it saw so far.
func countStatusChanges(tb testing.TB, ns string) func() int {
	tb.Helper()
	var n atomic.Int64
	factory := informers.NewSharedInformerFactoryWithOptions(testEnv.kube, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Services().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(o, c any) {
			if !statusEqual(o.(*corev1.Service).Status, c.(*corev1.Service).Status) {
				n.Add(1)
			}
		},
	}); err != nil {
		tb.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	tb.Cleanup(func() { close(stop); factory.Shutdown() })
	return func() int { return int(n.Load()) }
}
