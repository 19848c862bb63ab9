package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testLab is a small network in namespaces, the shape of the real lab's:
//
//	client 198.51.100.10 ──┐
//	                       ├─ lan (bridge) ─┬─ node1 198.51.100.1  (ironlb table) ── pod1 198.18.1.2, pod2 198.18.2.2
//	                       │                └─ node2 198.51.100.2  (plain router)  ── pod3 198.18.3.2
//
// with IPv6 alongside (2001:db8:100::/64 on the LAN, 2001:db8:N::/64 per pod). The client routes
// 203.0.113.0/24 and 2001:db8:113::/64 (LoadBalancer IPs) to node1, as an L2 or BGP
// announcement would. Every pod serves TCP on 8080 and UDP on 5353 and answers
// "<pod> <client address it saw>".
type testLab struct {
	lan, client, node1, node2 string
	pods                      map[string]string // pod name -> namespace
	applier                   *Applier
}

type labPod struct {
	name, node string
	v4, v6     string // pod address; the node side of its link is .1 / ::1
}

var labPods = []labPod{
	{"pod1", "node1", "198.18.1.2", "2001:db8:1::2"},
	{"pod2", "node1", "198.18.2.2", "2001:db8:2::2"},
	{"pod3", "node2", "198.18.3.2", "2001:db8:3::2"},
}

const (
	clientV4 = "198.51.100.10"
	clientV6 = "2001:db8:100::10"
	node1V4  = "198.51.100.1"
	node1V6  = "2001:db8:100::1"
	node2V4  = "198.51.100.2"
	node2V6  = "2001:db8:100::2"
)

func newTestLab(t *testing.T) *testLab {
	t.Helper()
	l := &testLab{pods: map[string]string{}}
	l.lan = newNamespace(t, "lan")
	run(t, "ip", "-n", l.lan, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.lan, "link", "set", "br0", "up")
	l.client = l.lanHost(t, "client", clientV4+"/24", clientV6+"/64")
	l.node1 = l.lanHost(t, "node1", node1V4+"/24", node1V6+"/64")
	l.node2 = l.lanHost(t, "node2", node2V4+"/24", node2V6+"/64")
	route(t, l.client, "203.0.113.0/24", "via", node1V4)
	route(t, l.client, "2001:db8:113::/64", "via", node1V6)
	for _, n := range []string{l.node1, l.node2} {
		sysctl(t, n, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
		// A default route, as nodes have: the node's own connections to a ClusterIP need a
		// route before the output hook DNATs them. Nobody answers at .254; nothing goes there.
		route(t, n, "default", "via", "198.51.100.254")
		route(t, n, "::/0", "via", "2001:db8:100::fe")
	}
	for _, p := range labPods {
		node, nodeV4, nodeV6, other := l.node1, node1V4, node1V6, l.node2
		if p.node == "node2" {
			node, nodeV4, nodeV6, other = l.node2, node2V4, node2V6, l.node1
		}
		ns := newNamespace(t, p.name)
		l.pods[p.name] = ns
		veth(t, node, "v"+p.name, ns, "eth0")
		net4, net6 := strings.TrimSuffix(p.v4, "2"), strings.TrimSuffix(p.v6, "2") // "198.18.1.", "2001:db8:1::"
		addr(t, node, "v"+p.name, net4+"1/24", net6+"1/64")
		addr(t, ns, "eth0", p.v4+"/24", p.v6+"/64")
		route(t, ns, "default", "via", net4+"1")
		route(t, ns, "::/0", "via", net6+"1")
		route(t, other, net4+"0/24", "via", nodeV4)
		route(t, other, net6+"/64", "via", nodeV6)
		serve(t, ns, p.name)
	}
	inNamespace(t, l.node1, func() {
		nft, err := NewInterface()
		if err != nil {
			t.Fatal(err)
		}
		l.applier = NewApplier(nft)
	})
	return l
}

// lanHost creates a namespace on the LAN with eth0 and the given addresses.
func (l *testLab) lanHost(t *testing.T, role string, cidrs ...string) string {
	ns := newNamespace(t, role)
	// Nodes send connections for remote endpoints back out of the interface they came in on,
	// and Linux then sends the client ICMP redirects, which share a per-destination rate limit
	// with the port-unreachable errors of "no endpoints": turn redirects off, as a node would.
	sysctl(t, ns, "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0")
	veth(t, ns, "eth0", l.lan, role)
	run(t, "ip", "-n", l.lan, "link", "set", role, "master", "br0")
	addr(t, ns, "eth0", cidrs...)
	return ns
}

// sync renders in for node1 and applies it there.
func (l *testLab) sync(t *testing.T, in Input) SyncResult {
	t.Helper()
	var res SyncResult
	inNamespace(t, l.node1, func() {
		var err error
		if res, err = l.applier.Sync(context.Background(), Render(in)); err != nil {
			t.Fatalf("Sync: %v", err)
		}
	})
	return res
}

// serve answers TCP on 8080 and UDP on 5353 in ns with "<pod> <client address>".
func serve(t *testing.T, ns, pod string) {
	var ln net.Listener
	var pc net.PacketConn
	inNamespace(t, ns, func() {
		var err error
		if ln, err = net.Listen("tcp", ":8080"); err != nil {
			t.Fatal(err)
		}
		if pc, err = net.ListenPacket("udp", ":5353"); err != nil {
			t.Fatal(err)
		}
	})
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); pc.Close(); wg.Wait() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", pod, host)
			c.Close()
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			_, _ = pc.WriteTo([]byte(pod+" "+host), from)
		}
	}()
}

// reply is what a pod answered: its name and the client address it saw.
type reply struct{ pod, saw string }

// get connects over TCP from ns to target ("addr:port") and reads the pod's answer.
func get(ns, target string, timeout time.Duration) (reply, error) {
	var c net.Conn
	err := inNamespaceErr(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", target, timeout)
		return err
	})
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return reply{}, fmt.Errorf("reading from %s: %w", target, err)
	}
	pod, saw, _ := strings.Cut(strings.TrimSpace(line), " ")
	return reply{pod, saw}, nil
}

// getUDP sends a datagram from ns to target and reads the answer.
func getUDP(ns, target string, timeout time.Duration) (reply, error) {
	var c net.Conn
	err := inNamespaceErr(ns, func() error {
		var err error
		c, err = net.Dial("udp", target)
		return err
	})
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("hello")); err != nil {
		return reply{}, err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return reply{}, err
	}
	pod, saw, _ := strings.Cut(string(buf[:n]), " ")
	return reply{pod, saw}, nil
}

// getUDPFrom sends a datagram from ns, from a fixed source port, to target and reads the answer.
func getUDPFrom(ns string, srcPort int, target string) (reply, error) {
	var c *net.UDPConn
	err := inNamespaceErr(ns, func() error {
		raddr, err := net.ResolveUDPAddr("udp", target)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp", &net.UDPAddr{Port: srcPort}, raddr)
		return err
	})
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return reply{}, err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return reply{}, err
	}
	pod, saw, _ := strings.Cut(string(buf[:n]), " ")
	return reply{pod, saw}, nil
}

// getMany makes n TCP requests and counts answers per "pod saw".
func getMany(t *testing.T, ns, target string, n int) map[reply]int {
	t.Helper()
	got := map[reply]int{}
	for range n {
		r, err := get(ns, target, 2*time.Second)
		if err != nil {
			t.Fatalf("request %s from %s: %v", target, ns, err)
		}
		got[r]++
	}
	return got
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
