package e2e

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The L2 figures of BENCHMARKS.md. Run them with
//
//	go test ./e2e -run '^$' -bench 'L2' -benchtime 1x -timeout 30m
//
// Each reports its percentiles as benchmark metrics (ms).

// BenchmarkL2Failover: time from a fault on the owner to the first gratuitous ARP from the new
// owner seen by a client on the LAN, 20 trials per fault kind.
func BenchmarkL2Failover(b *testing.B) {
	s := newScenario(b)
	pool := s.l2Pool("198.51.100.230-198.51.100.239")
	s.pods("bench", env.lab.Nodes...)
	s.service("bench", "bench", pool, nil)
	ip := s.ingress("bench")[0]
	kinds := []struct {
		name           string
		inject, repair func(n *lab.Node)
	}{
		{"SIGKILL", func(n *lab.Node) { benchStop(b, n, syscall.SIGKILL) }, benchRestart(b)},
		{"link-down", func(n *lab.Node) { mustExec(b, n.NetNS, "ip", "link", "set", "eth0", "down") },
			func(n *lab.Node) {
				if err := env.lab.LinkUp(context.Background(), n); err != nil {
					b.Fatal(err)
				}
			}},
		{"SIGTERM", func(n *lab.Node) { benchStop(b, n, syscall.SIGTERM) }, benchRestart(b)},
	}
	for _, k := range kinds {
		var took []time.Duration
		for trial := 0; trial < 20; trial++ {
			old := s.stableOwner("bench", ip)
			capture := startCapture(s.t, ip)
			start := time.Now()
			k.inject(old)
			var first time.Time
			s.eventually("a gratuitous ARP from a new owner", 15*time.Second, func() (bool, string) {
				first = capture.firstGratuitousNotFrom(old.MAC.String())
				return !first.IsZero(), capture.String()
			})
			took = append(took, first.Sub(start))
			k.repair(old)
		}
		report(b, "failover-"+k.name, took)
	}
}

// BenchmarkL2AssignToAnswer: time from a new Service's IP appearing in its status to the
// owner's first gratuitous ARP (its first answer on the LAN), 20 Services.
func BenchmarkL2AssignToAnswer(b *testing.B) {
	s := newScenario(b)
	pool := s.l2Pool("198.51.100.140-198.51.100.159")
	s.pods("a2a", env.lab.Nodes...)
	var took []time.Duration
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("a2a-%d", i)
		ip := fmt.Sprintf("198.51.100.%d", 140+i)
		capture := startCapture(s.t, ip)
		s.service(name, "a2a", pool, nil)
		// Poll the status every 2 ms: assigned is when the IP became visible (at most 2 ms
		// plus a round trip after the controller's write).
		var assigned time.Time
		s.eventually("the IP of "+name, 10*time.Second, func() (bool, string) {
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				svc, err := env.lab.Client.CoreV1().Services(s.ns).Get(s.ctx, name, metav1.GetOptions{})
				if err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
					if got := svc.Status.LoadBalancer.Ingress[0].IP; got != ip {
						b.Fatalf("%s got %s, want %s", name, got, ip)
					}
					assigned = time.Now()
					return true, ""
				}
			}
			return false, "no IP yet"
		})
		var first time.Time
		s.eventually("the owner's first gratuitous ARP for "+ip, 10*time.Second, func() (bool, string) {
			first = capture.firstGratuitousNotFrom("")
			return !first.IsZero(), capture.String()
		})
		took = append(took, first.Sub(assigned))
	}
	report(b, "assign-to-answer", took)
}

// BenchmarkL2SteadyState counts ownership moves of 10 Services while every node is healthy,
// for 10 minutes, with one core kept busy by a spinning goroutine. Owners are read from the
// ServiceAnnouncements every 500 ms; any change of a Service's set of announcers is a move.
func BenchmarkL2SteadyState(b *testing.B) {
	s := newScenario(b)
	pool := s.l2Pool("198.51.100.120-198.51.100.129")
	s.pods("steady", env.lab.Nodes...)
	for i := 0; i < 10; i++ {
		s.service(fmt.Sprintf("steady-%d", i), "steady", pool, nil)
	}
	owners := func() []string {
		out := make([]string, 10)
		for i := range out {
			out[i] = strings.Join(s.announcers(fmt.Sprintf("steady-%d", i)), ",")
		}
		return out
	}
	s.eventually("10 Services with one owner each", 30*time.Second, func() (bool, string) {
		o := owners()
		return !slices.ContainsFunc(o, func(a string) bool { return a == "" || strings.Contains(a, ",") }), fmt.Sprint(o)
	})
	var stop atomic.Bool
	go func() { // keep a core busy
		runtime.LockOSThread()
		for !stop.Load() {
		}
	}()
	prev := owners()
	moves := 0
	var seen []string
	for end := time.Now().Add(10 * time.Minute); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		cur := owners()
		for i := range cur {
			if cur[i] != prev[i] {
				moves++
				seen = append(seen, fmt.Sprintf("%s steady-%d: %q -> %q", time.Now().Format(time.TimeOnly), i, prev[i], cur[i]))
			}
		}
		prev = cur
	}
	stop.Store(true)
	b.ReportMetric(float64(moves), "moves")
	b.Logf("ownership changes in 10 min with healthy nodes and a busy core: %d %v", moves, seen)
}

func report(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	p := func(q float64) float64 {
		i := int(q*float64(len(d))+0.5) - 1
		i = max(0, min(i, len(d)-1))
		return float64(d[i].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.5), name+"-p50-ms")
	b.ReportMetric(p(0.99), name+"-p99-ms")
	b.Logf("%s: n=%d p50=%.0f ms p99=%.0f ms max=%.0f ms all=%v", name, len(d), p(0.5), p(0.99), float64(d[len(d)-1].Microseconds())/1000, d)
}

func benchStop(b *testing.B, n *lab.Node, sig syscall.Signal) {
	if err := env.ilb.StopSpeaker(context.Background(), n, sig); err != nil {
		b.Fatal(err)
	}
}

func benchRestart(b *testing.B) func(n *lab.Node) {
	return func(n *lab.Node) {
		if err := env.ilb.StartSpeaker(context.Background(), n); err != nil {
			b.Fatal(err)
		}
	}
}

func mustExec(b *testing.B, ns string, argv ...string) {
	if _, err := lab.Exec(context.Background(), ns, argv...); err != nil {
		b.Fatal(err)
	}
}
