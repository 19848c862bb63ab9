package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	"github.com/ironlb/ironlb/internal/demo"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The scripted cases of TestForwardingMatchesKubeProxy (diffEnv.scripted): scenarios that
// change the cluster or wait, each described as a string that does not depend on chance.

const (
	affinityTimeout = 2 * time.Second                        // affexp's sessionAffinityConfig.clientIP.timeoutSeconds
	affinityIdle    = affinityTimeout + 500*time.Millisecond // how long affinityExpiry's clients stay quiet
	expiryRounds    = 2                                      // quiet periods affinityExpiry waits at most
	expiryClientN   = 16                                     // affinityExpiry's clients, per family
)

// expiryClients are the LAN client's extra addresses of family 4 or 6, one per client of
// affinityExpiry (setUpDiff adds them).
func expiryClients(family int) []netip.Addr {
	a := expiryFirsts[0]
	if family == 6 {
		a = expiryFirsts[1]
	}
	out := make([]netip.Addr, expiryClientN)
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

// affinityExpiry: expiryClientN clients on the LAN, each from an address of its own, ask
// affexp's LoadBalancer IP of family 4 or 6 (ClientIP affinity, timeout affinityTimeout) twice
// in a row, which the same pod must answer; then all stay quiet for affinityIdle and ask again,
// up to expiryRounds times. Once the timeout has passed without traffic the affinity is gone
// and each client's endpoint is picked anew: with two endpoints each client lands on the other
// pod with a chance of 1/2, so some of them move (none but for a chance of 2^-16 per round).
// The same pod for all of them every round means the affinity outlived its timeout.
func (d *diffEnv) affinityExpiry(family int) string {
	url := "http://" + lb("affexp", family, 80)(d) + "/"
	srcs := expiryClients(family)
	ask := func(src netip.Addr) (string, error) {
		body, err := lab.HTTPGetFrom(d.s.ctx, lab.NSLANClient, src, url, probeTimeout)
		if err != nil { // once more: on a loaded machine an answer can come late
			body, err = lab.HTTPGetFrom(d.s.ctx, lab.NSLANClient, src, url, probeTimeout)
		}
		if err != nil {
			return "", err
		}
		pod, _, err := demo.ParseAnswer(body)
		return pod, err
	}
	askAll := func() ([]string, error) {
		pods := make([]string, len(srcs))
		var g errgroup.Group
		for i, src := range srcs {
			g.Go(func() (err error) { pods[i], err = ask(src); return err })
		}
		return pods, g.Wait()
	}
	first, err := askAll()
	if err != nil {
		return "no answer: " + err.Error()
	}
	last, err := askAll()
	if err != nil {
		return "no answer: " + err.Error()
	}
	for i := range first {
		if first[i] != last[i] {
			return "not sticky: a client's two requests in a row reached two pods"
		}
	}
	for range expiryRounds {
		time.Sleep(affinityIdle) // the quiet period whose effect is probed
		now, err := askAll()
		if err != nil {
			return "sticky, then no answer: " + err.Error()
		}
		for i := range now {
			if now[i] != last[i] {
				return fmt.Sprintf("sticky; picked anew after %v without traffic", affinityIdle)
			}
		}
		last = now
	}
	return fmt.Sprintf("sticky; the same pods after %d times %v without traffic", expiryRounds, affinityIdle)
}

// udpEndpointGone: a client on a fixed UDP source port (a new one per call) talks to addr;
// the endpoint that answers goes away by remove while its pod keeps running, so a stale
// conntrack entry would keep reaching it; the returned function brings it back. The outcome
// says whether the client's next datagrams reached the other endpoint within 10 s.
func (d *diffEnv) udpEndpointGone(t *testing.T, addr string, remove func(gone *lab.Pod) (restore func())) string {
	d.udpPort++
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err.Error()
	}
	var conn *net.UDPConn
	if err := lab.InNetNS(lab.NSLANClient, func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: 40000 + d.udpPort})
		return err
	}); err != nil {
		return err.Error()
	}
	defer conn.Close()
	ask := func() string {
		_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := conn.WriteTo([]byte("hello"), to); err != nil {
			return ""
		}
		buf := make([]byte, 512)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return ""
		}
		pod, _, err := demo.ParseAnswer(string(buf[:n]))
		if err != nil {
			return ""
		}
		return pod
	}
	first := ""
	for range 6 {
		if first = ask(); first != "" {
			break
		}
	}
	if first == "" {
		return "no answer"
	}
	for range 3 {
		if got := ask(); got != first {
			return fmt.Sprintf("not pinned to one endpoint: %q then %q", first, got)
		}
	}
	gone := d.webA
	if first == d.webB.Name {
		gone = d.webB
	}
	defer remove(gone)()
	outcome := "stayed on the gone endpoint for 10 s"
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := ask(); got != "" && got != first {
			outcome = "moved to the other endpoint"
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return outcome
}

// notReady is udpEndpointGone's remove for web: the pod's readiness gate turns false, and back
// true at restore, which waits for web's two endpoints to be ready again.
func (d *diffEnv) notReady(t *testing.T) func(*lab.Pod) func() {
	s := d.s
	return func(gone *lab.Pod) func() {
		if err := env.lab.SetPodReady(s.ctx, gone, false); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := env.lab.SetPodReady(s.ctx, gone, true); err != nil {
				t.Fatal(err)
			}
			s.eventually("web's two endpoints ready again", 30*time.Second, func() (bool, string) {
				_, ready, _ := s.sliceEndpoints("web")
				return ready == 2, fmt.Sprint(ready, " ready")
			})
		}
	}
}

// dropFromSlice is udpEndpointGone's remove for a Service whose EndpointSlices the test
// writes: the pod's endpoint leaves EndpointSlice name (as when its pod is deleted), and comes
// back at restore.
func (d *diffEnv) dropFromSlice(t *testing.T, name string) func(*lab.Pod) func() {
	s := d.s
	slices := env.lab.Client.DiscoveryV1().EndpointSlices(s.ns)
	return func(gone *lab.Pod) func() {
		sl, err := slices.Get(s.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		all := sl.Endpoints
		sl.Endpoints = nil
		for _, ep := range all {
			if a := ep.Addresses[0]; a != gone.IP4.String() && a != gone.IP6.String() {
				sl.Endpoints = append(sl.Endpoints, ep)
			}
		}
		if sl, err = slices.Update(s.ctx, sl, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return func() {
			sl.Endpoints = all
			if _, err := slices.Update(s.ctx, sl, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}
