package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkForwardingThroughput compares requests per second from the LAN client through an
// external IP (the owner node DNATs to the pod) with the same requests routed straight to the
// pod through the same node, so the difference is the cost of ironlb's rules. One pod on the
// owner (externalTrafficPolicy Local), 8 workers, 4,000 requests per path; each request opens
// a new connection (the case that pays for DNAT and conntrack) unless -keepalive says otherwise.
//
//	go test ./e2e -run '^$' -bench ForwardingThroughput -benchtime 1x
func BenchmarkForwardingThroughput(b *testing.B) {
	s := newScenario(b)
	pool := s.l2Pool("198.51.100.110-198.51.100.111")
	node := env.lab.Nodes[0]
	pods := s.pods("rps", node)
	s.service("rps", "rps", pool, func(svc *corev1.Service) {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	ip := s.ingress("rps")[0]
	s.eventually("the external IP answers", 10*time.Second, func() (bool, string) {
		_, _, err := get(s.ctx, lab.NSLANClient, ip)
		return err == nil, fmt.Sprint(err)
	})
	// The direct path: the client routes the pod network through the same node.
	mustExec(b, lab.NSLANClient, "ip", "route", "replace", node.Pod4.String(), "via", node.LAN4.String())
	b.Cleanup(func() {
		_, _ = lab.Exec(context.Background(), lab.NSLANClient, "ip", "route", "del", node.Pod4.String())
	})

	for _, keepAlive := range []bool{false, true} {
		direct := load(b, s.ctx, net.JoinHostPort(pods[0].IP4.String(), "8080"), keepAlive)
		via := load(b, s.ctx, net.JoinHostPort(ip, "80"), keepAlive)
		mode := "new-conn"
		if keepAlive {
			mode = "keepalive"
		}
		b.ReportMetric(direct, mode+"-direct-req/s")
		b.ReportMetric(via, mode+"-via-lb-req/s")
		b.Logf("%s: straight to the pod %.0f req/s, through the external IP %.0f req/s (%.1f%%)", mode, direct, via, 100*via/direct)
	}
}

// load sends 4,000 GET requests from the LAN client with 8 workers and returns requests/s.
func load(b *testing.B, ctx context.Context, addr string, keepAlive bool) float64 {
	const total, workers = 4000, 8
	tr := &http.Transport{
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: workers,
		DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
			return lab.DialIn(ctx, lab.NSLANClient, a)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body) // read to the end so the connection is reused
				_ = resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d requests to %s failed", f, total, addr)
	}
	return total / took.Seconds()
}
