package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/e2e/lab"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestL2OneOwnerAnswersARP: exactly one node answers ARP for an L2 IP, with the MAC of the node
// its ServiceAnnouncement names; no other node answers.
func TestL2OneOwnerAnswersARP(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.200-198.51.100.209")
	s.pods("web", env.lab.Nodes...)
	s.service("web", "web", pool, nil)
	ip := s.ingress("web")[0]
	owner := s.stableOwner("web", ip) // the speakers may still be joining each other
	if a := s.announcers("web"); len(a) != 1 || a[0] != owner.Name {
		t.Fatalf("announcers %v, want only %s", a, owner.Name)
	}
	macs, err := arping(s.ctx, ip, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(macs) != 3 {
		t.Fatalf("%d replies to 3 requests (%v), want exactly one per request", len(macs), macs)
	}
	for _, mac := range macs {
		if mac != owner.MAC.String() {
			t.Fatalf("reply from %s, want the owner %s's %s", mac, owner.Name, owner.MAC)
		}
	}
	// The address answers HTTP through the owner once forwarding exists; ARP is this test's part.
	t.Logf("%s owned by %s (%s)", ip, owner.Name, owner.MAC)
}

// TestL2NDP: the owner answers a neighbour solicitation for an IPv6 L2 IP (multicast), and a
// unicast NUD probe.
func TestL2NDP(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("2001:db8:100::300-2001:db8:100::30f")
	s.pods("web6", env.lab.Nodes...)
	s.service("web6", "web6", pool, func(svc *corev1.Service) {
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	})
	ip := s.ingress("web6")[0]
	owner := s.owner("web6", "")
	// Multicast NS: the client's kernel resolves the address when it sends to it.
	_, _ = lab.Exec(s.ctx, lab.NSLANClient, "ip", "-6", "neigh", "flush", "dev", "eth0")
	s.eventually("the client resolves "+ip, 10*time.Second, func() (bool, string) {
		_, _ = lab.HTTPGet(s.ctx, lab.NSLANClient, "http://["+ip+"]/", 200*time.Millisecond)
		mac, state := neighbour(s.ctx, ip)
		return mac == owner.MAC.String(), mac + " " + state
	})
	// Unicast NUD: mark the entry stale and send; the kernel probes the cached MAC directly
	// (PROBE state) and the entry becomes REACHABLE only if the owner answers that probe.
	if _, err := lab.Exec(s.ctx, lab.NSLANClient, "sysctl", "-w", "net.ipv6.neigh.eth0.delay_first_probe_time=1"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(s.ctx, lab.NSLANClient, "ip", "-6", "neigh", "replace", ip, "lladdr", owner.MAC.String(), "dev", "eth0", "nud", "stale"); err != nil {
		t.Fatal(err)
	}
	s.eventually("a unicast NUD probe answered (REACHABLE)", 10*time.Second, func() (bool, string) {
		_, _ = lab.HTTPGet(s.ctx, lab.NSLANClient, "http://["+ip+"]/", 200*time.Millisecond)
		mac, state := neighbour(s.ctx, ip)
		return mac == owner.MAC.String() && state == "REACHABLE", mac + " " + state
	})
}

// TestL2Failover: for each fault, a new node takes the IP; the client captures the new owner's
// gratuitous ARP and its neighbour entry moves to the new MAC.
func TestL2Failover(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.210-198.51.100.219")
	s.pods("fo", env.lab.Nodes...)
	s.service("fo", "fo", pool, nil)
	ip := s.ingress("fo")[0]

	var lost time.Time // when the "node lost" fault began
	faults := []struct {
		name           string
		inject, repair func(t *testing.T, n *lab.Node)
	}{
		{"SIGKILL", func(t *testing.T, n *lab.Node) { stopSpeaker(t, n, syscall.SIGKILL) }, restartSpeaker},
		{"link down", func(t *testing.T, n *lab.Node) {
			if _, err := lab.Exec(context.Background(), n.NetNS, "ip", "link", "set", "eth0", "down"); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, n *lab.Node) {
			if err := env.lab.LinkUp(context.Background(), n); err != nil {
				t.Fatal(err)
			}
		}},
		{"SIGTERM", func(t *testing.T, n *lab.Node) { stopSpeaker(t, n, syscall.SIGTERM) }, restartSpeaker},
		// The node's kubelet, containerd, containers and nftables rules gone, as in a power
		// loss (its links stay up); then it boots again and the kubelet restarts its pods.
		{"node lost", func(t *testing.T, n *lab.Node) {
			lost = time.Now()
			if err := env.lab.StopNode(context.Background(), n); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, n *lab.Node) {
			if err := env.lab.StartNode(context.Background(), n); err != nil {
				t.Fatal(err)
			}
			if err := env.ilb.WaitSpeaker(context.Background(), n, lost); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, f := range faults {
		for trial := 1; trial <= 2; trial++ {
			t.Run(fmt.Sprintf("%s/%d", f.name, trial), func(t *testing.T) {
				s := s.with(t)
				old := s.stableOwner("fo", ip)
				// The client's kernel resolves the IP (arping does not touch its table).
				s.eventually("the client's neighbour entry names "+old.Name, 5*time.Second, func() (bool, string) {
					_, _ = lab.HTTPGet(s.ctx, lab.NSLANClient, "http://"+ip+"/", 100*time.Millisecond)
					mac, state := neighbour(s.ctx, ip)
					return mac == old.MAC.String(), mac + " " + state
				})
				capture := startCapture(t, ip)
				f.inject(t, old)
				repaired := false
				repair := func() {
					if !repaired {
						repaired = true
						f.repair(t, old)
					}
				}
				defer repair()
				next := s.owner("fo", old.Name)
				s.eventually("a gratuitous ARP from "+next.Name, 10*time.Second, func() (bool, string) {
					return capture.sawGratuitousFrom(next.MAC.String()), capture.String()
				})
				s.eventually("the client's neighbour entry moves to "+next.Name, 10*time.Second, func() (bool, string) {
					mac, state := neighbour(s.ctx, ip)
					return mac == next.MAC.String(), mac + " " + state
				})
				if f.name == "link down" {
					// The node still renews its Lease over its other link: the others must
					// not give the IP back to it (it cannot answer on the LAN), past its next
					// renewals (every 5 s). (HTTP is not checked: the cut-off node's pod is
					// still a ready endpoint, as its kubelet reports it, and unreachable.)
					s.eventually("only "+next.Name+" announces", 10*time.Second, func() (bool, string) {
						a := s.announcers("fo")
						return len(a) == 1 && a[0] == next.Name, fmt.Sprint(a)
					})
					s.holds(next.Name+" alone announcing and answering ARP", 12*time.Second, func() (bool, string) {
						a := s.announcers("fo")
						macs, err := arping(s.ctx, ip, 2) // a reply late under load is no failure; another MAC is
						return len(a) == 1 && a[0] == next.Name && !slices.ContainsFunc(macs, func(m string) bool { return m != next.MAC.String() }),
							fmt.Sprint(a, macs, err)
					})
				}
				if f.name == "SIGKILL" {
					// The killed speaker could not remove its ServiceAnnouncement; the new
					// owner removes a dead node's, so kubectl names the one node that answers.
					s.eventually("only "+next.Name+" announces", 10*time.Second, func() (bool, string) {
						a := s.announcers("fo")
						return len(a) == 1 && a[0] == next.Name, fmt.Sprint(a)
					})
				}
				repair()
			})
		}
	}
}

// stopSpeaker stops n's speaker: a lab process, or on a real cluster the DaemonSet's pod.
func stopSpeaker(t *testing.T, n *lab.Node, sig syscall.Signal) {
	if err := env.ilb.StopSpeaker(context.Background(), n, sig); err != nil {
		t.Fatal(err)
	}
}

func restartSpeaker(t *testing.T, n *lab.Node) {
	if err := env.ilb.StartSpeaker(context.Background(), n); err != nil {
		t.Fatal(err)
	}
}

// TestL2LocalPolicyFollowsEndpoints: with externalTrafficPolicy Local only a node with a ready
// local endpoint may own; when that endpoint turns unready, ownership moves to the node whose
// endpoint is ready.
func TestL2LocalPolicyFollowsEndpoints(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.220-198.51.100.224")
	pods := s.pods("local", env.lab.Nodes[1], env.lab.Nodes[2])
	if err := env.lab.SetPodReady(s.ctx, pods[1], false); err != nil {
		t.Fatal(err)
	}
	s.service("local", "local", pool, func(svc *corev1.Service) {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	s.ingress("local")
	// The EndpointSlice may first list both pods ready (the readiness change races the
	// Service's creation in the lab's slice writer); the owner follows the slice.
	s.eventually("ownership on "+env.lab.Nodes[1].Name+", the only ready local endpoint", 10*time.Second, func() (bool, string) {
		a := s.announcers("local")
		return len(a) == 1 && a[0] == env.lab.Nodes[1].Name, fmt.Sprint(a)
	})
	if err := env.lab.SetPodReady(s.ctx, pods[1], true); err != nil {
		t.Fatal(err)
	}
	if err := env.lab.SetPodReady(s.ctx, pods[0], false); err != nil {
		t.Fatal(err)
	}
	s.eventually("ownership moves to "+env.lab.Nodes[2].Name, 10*time.Second, func() (bool, string) {
		a := s.announcers("local")
		return len(a) == 1 && a[0] == env.lab.Nodes[2].Name, fmt.Sprint(a)
	})
}

// TestL2Spread: 30 Services on 3 nodes are owned by all three, none owning more than 15.
func TestL2Spread(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.160-198.51.100.189")
	s.pods("spread", env.lab.Nodes...)
	for i := range 30 {
		s.service(fmt.Sprintf("s%02d", i), "spread", pool, nil)
	}
	count := map[string]int{}
	s.eventually("30 Services announced", 30*time.Second, func() (bool, string) {
		clear(count)
		n := 0
		for i := range 30 {
			if a := s.announcers(fmt.Sprintf("s%02d", i)); len(a) == 1 {
				count[a[0]]++
				n++
			}
		}
		return n == 30, fmt.Sprint(count)
	})
	t.Logf("ownership: %v", count)
	for _, node := range env.lab.Nodes {
		if c := count[node.Name]; c == 0 || c > 15 {
			t.Errorf("%s owns %d of 30, want 1..15", node.Name, c)
		}
	}
}

// capture runs tcpdump in the LAN client's namespace and keeps the ARP lines about one IP.
type capture struct {
	ip    string
	mu    sync.Mutex
	lines []string
}

func startCapture(t testing.TB, ip string) *capture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := lab.Command(ctx, lab.NSLANClient, "tcpdump", "-i", "eth0", "-n", "-e", "-tt", "-l", "-U", "arp")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &capture{ip: ip}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.Contains(line, ip) {
				c.mu.Lock()
				c.lines = append(c.lines, line)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); _ = cmd.Wait(); <-done })
	// tcpdump says "listening on eth0" on stderr once its socket is open.
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				close(listening)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start listening within 10 s")
	}
	return c
}

// sawGratuitousFrom reports a gratuitous ARP for the IP sent from mac.
func (c *capture) sawGratuitousFrom(mac string) bool {
	return !c.firstGratuitous(func(from string) bool { return from == mac }).IsZero()
}

// firstGratuitousNotFrom returns the capture time of the first gratuitous ARP for the IP sent
// from another MAC than mac (any MAC for ""), or the zero time.
func (c *capture) firstGratuitousNotFrom(mac string) time.Time {
	return c.firstGratuitous(func(from string) bool { return from != mac })
}

// firstGratuitous finds the first gratuitous ARP for the IP (a request with sender = target, or
// an unsolicited reply) whose source MAC passes from. Lines look like
// "1763719512.123456 aa:bb:cc:dd:ee:ff > ff:ff:ff:ff:ff:ff, ethertype ARP ... who-has IP tell IP".
func (c *capture) firstGratuitous(from func(string) bool) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		f := strings.Fields(l)
		if len(f) < 2 || !from(f[1]) {
			continue
		}
		if !strings.Contains(l, "who-has "+c.ip+" tell "+c.ip) && !strings.Contains(l, "Reply "+c.ip+" is-at "+f[1]) {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		return time.Unix(0, int64(sec*1e9))
	}
	return time.Time{}
}

func (c *capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// TestL2MissingInterfaceIsReported: an L2Advertisement naming an interface the nodes lack gets
// a Warning event, and the IP is still announced on the interface that exists.
func TestL2MissingInterfaceIsReported(t *testing.T) {
	s := newScenario(t)
	name := s.ns + "-l2"
	s.apply("ippools", &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.225-198.51.100.226"}, AutoAssign: ptr(false)}})
	s.apply("l2advertisements", &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{name}, Interfaces: []string{"eth0", "bond9"}}})
	s.pods("miss", env.lab.Nodes...)
	s.service("miss", "miss", name, nil)
	ip := s.ingress("miss")[0]
	owner := s.owner("miss", "")
	s.eventually("a Warning event on the L2Advertisement naming bond9", 20*time.Second, func() (bool, string) {
		list, err := env.lab.Client.CoreV1().Events(metav1.NamespaceDefault).List(s.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == "InterfaceMissing" && strings.Contains(e.Message, "bond9") {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(list.Items), " events")
	})
	if macs, err := arping(s.ctx, ip, 1); err != nil || len(macs) != 1 || macs[0] != owner.MAC.String() {
		t.Fatalf("ARP for %s: %v (%v), want one reply from %s on eth0", ip, macs, err, owner.Name)
	}
}
