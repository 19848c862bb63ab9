package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	"github.com/ironlb/ironlb/internal/demo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// get fetches http://addr/ from ns and returns the answering pod and the client address it saw.
func get(ctx context.Context, ns, addr string) (pod, client string, err error) {
	body, err := lab.HTTPGet(ctx, ns, "http://"+addr+"/", 2*time.Second)
	if err != nil {
		return "", "", err
	}
	return demo.ParseAnswer(body)
}

// spread sends n requests and counts the answering pods.
func spread(t testing.TB, ctx context.Context, ns, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		pod, _, err := get(ctx, ns, addr)
		if err != nil {
			t.Fatalf("request to %s from %s: %v", addr, ns, err)
		}
		got[pod]++
	}
	return got
}

func hostPort(ip string, port int32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }

func (s *scenario) svc(name string) *corev1.Service {
	s.t.Helper()
	svc, err := env.lab.Client.CoreV1().Services(s.ns).Get(s.ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return svc
}

// TestForwardingL2: the L2 external IP answers from the LAN, through the owner, from pods on
// any node; NodePorts answer on every node's address; the ClusterIP answers from every node.
func TestForwardingL2(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.240-198.51.100.244")
	s.pods("fw", env.lab.Nodes...)
	s.service("fw", "fw", pool, nil)
	ip := s.ingress("fw")[0]
	s.owner("fw", "")
	s.eventually("the external IP answers from the LAN", 10*time.Second, func() (bool, string) {
		_, _, err := get(s.ctx, lab.NSLANClient, ip)
		return err == nil, fmt.Sprint(err)
	})
	// Each node syncs its rules on its own: wait until every node forwards the Service.
	svc := s.svc("fw")
	t.Run("NodePort on every node's address, ClusterIP from every node", func(t *testing.T) {
		s := s.with(t)
		for _, n := range env.lab.Nodes {
			nodePort := hostPort(n.LAN4.String(), svc.Spec.Ports[0].NodePort)
			s.eventually("NodePort "+nodePort, 10*time.Second, func() (bool, string) {
				_, _, err := get(s.ctx, lab.NSLANClient, nodePort)
				return err == nil, fmt.Sprint(err)
			})
			s.eventually("ClusterIP from "+n.Name, 10*time.Second, func() (bool, string) {
				_, _, err := get(s.ctx, n.NetNS, hostPort(svc.Spec.ClusterIP, 80))
				return err == nil, fmt.Sprint(err)
			})
		}
	})
	t.Run("Cluster policy reaches pods on other nodes", func(t *testing.T) {
		got := spread(t, s.ctx, lab.NSLANClient, ip, 60)
		if len(got) < 2 {
			t.Errorf("60 requests reached only %v; Cluster policy must spread over the pods of all nodes", got)
		}
	})
	t.Run("hairpin: a pod reaches its own Service", func(t *testing.T) {
		pods := s.podsOf("fw")
		for range 10 {
			if _, _, err := get(s.ctx, pods[0].NetNS, hostPort(svc.Spec.ClusterIP, 80)); err != nil {
				t.Fatalf("from pod %s: %v", pods[0].Name, err)
			}
		}
	})
}

// TestForwardingLocalPolicyKeepsTheClientAddress: with externalTrafficPolicy Local the pod sees
// the LAN client's own address.
func TestForwardingLocalPolicyKeepsTheClientAddress(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.245-198.51.100.246")
	s.pods("local-fw", env.lab.Nodes[0])
	s.service("local-fw", "local-fw", pool, func(svc *corev1.Service) {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	ip := s.ingress("local-fw")[0]
	var client string
	s.eventually("an answer through the Local Service", 10*time.Second, func() (bool, string) {
		var err error
		_, client, err = get(s.ctx, lab.NSLANClient, ip)
		return err == nil, fmt.Sprint(err)
	})
	if host, _, _ := net.SplitHostPort(client); host != lab.ClientLAN4.String() {
		t.Errorf("the pod saw %s, want the client's address %s", client, lab.ClientLAN4)
	}
}

// TestForwardingReadinessAffinityAndReject: a not-ready endpoint gets no traffic; ClientIP
// affinity keeps a client on one pod; a Service without endpoints is refused at once; UDP works.
func TestForwardingReadinessAffinityAndReject(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.247-198.51.100.250")
	pods := s.pods("rdy", env.lab.Nodes...)
	s.service("rdy", "rdy", pool, nil)
	ip := s.ingress("rdy")[0]
	if err := env.lab.SetPodReady(s.ctx, pods[1], false); err != nil {
		t.Fatal(err)
	}
	s.eventually("answers only from ready pods", 10*time.Second, func() (bool, string) {
		got := map[string]int{}
		for range 10 {
			pod, _, err := get(s.ctx, lab.NSLANClient, ip)
			if err != nil {
				return false, err.Error()
			}
			got[pod]++
		}
		return got[pods[1].Name] == 0, fmt.Sprint(got)
	})
	if got := spread(t, s.ctx, lab.NSLANClient, ip, 200); got[pods[1].Name] != 0 {
		t.Errorf("the not-ready pod got %d of 200 requests: %v", got[pods[1].Name], got)
	}

	t.Run("ClientIP affinity", func(t *testing.T) {
		s.service("aff", "rdy", pool, func(svc *corev1.Service) {
			svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		})
		aip := s.ingress("aff")[0]
		s.eventually("the affinity Service answers", 10*time.Second, func() (bool, string) {
			_, _, err := get(s.ctx, lab.NSLANClient, aip)
			return err == nil, fmt.Sprint(err)
		})
		if got := spread(t, s.ctx, lab.NSLANClient, aip, 50); len(got) != 1 {
			t.Errorf("50 requests with ClientIP affinity reached %v, want one pod", got)
		}
	})

	t.Run("no endpoints: refused within 1 s", func(t *testing.T) {
		s := s.with(t)
		s.service("empty", "nobody", pool, nil)
		eip := s.ingress("empty")[0]
		svc := s.svc("empty")
		for _, addr := range []string{hostPort(eip, 80), hostPort(env.lab.Nodes[0].LAN4.String(), svc.Spec.Ports[0].NodePort)} {
			s.eventually("a fast refusal at "+addr, 10*time.Second, func() (bool, string) {
				start := time.Now()
				_, _, err := get(s.ctx, lab.NSLANClient, addr)
				took := time.Since(start)
				return err != nil && refused(err) && took < time.Second, fmt.Sprintf("%v after %v", err, took)
			})
		}
	})

	t.Run("UDP", func(t *testing.T) {
		p, err := env.lab.AddPod(s.ctx, lab.PodSpec{Namespace: s.ns, Name: "dns-0", Node: env.lab.Nodes[2], Labels: map[string]string{"app": "dns"}, UDPPorts: []int{5353}})
		if err != nil {
			t.Fatal(err)
		}
		s.service("dns", "dns", pool, func(svc *corev1.Service) {
			svc.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(5353)}}
		})
		uip := s.ingress("dns")[0]
		s.eventually("a UDP answer through "+uip, 10*time.Second, func() (bool, string) {
			got, err := udpAsk(s.ctx, lab.NSLANClient, hostPort(uip, 53))
			return err == nil && strings.Contains(got, "pod="+p.Name), fmt.Sprint(got, err)
		})
	})
}

func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "no route to host") || strings.Contains(err.Error(), "connection reset")
}

// udpAsk sends one datagram from ns and waits up to 500 ms for the answer.
func udpAsk(ctx context.Context, ns, addr string) (string, error) {
	var out string
	err := lab.InNetNS(ns, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		out = string(buf[:n])
		return err
	})
	return out, err
}

func (s *scenario) podsOf(app string) []*lab.Pod {
	var out []*lab.Pod
	for _, p := range env.lab.Pods() {
		if p.Namespace == s.ns && strings.HasPrefix(p.Name, app+"-") {
			out = append(out, p)
		}
	}
	return out
}

// TestForwardingAutoStepsAsideForKubeProxy: with a stand-in kube-proxy table on a node, a speaker
// started with --forwarding=auto leaves ironlb's table absent there.
func TestForwardingAutoStepsAsideForKubeProxy(t *testing.T) {
	n := env.lab.Nodes[2]
	stopSpeaker(t, n, syscall.SIGTERM)
	mustRun(t, n.NetNS, "nft", "add", "table", "ip", "kube-proxy")
	_, _ = lab.Exec(context.Background(), n.NetNS, "nft", "delete", "table", "inet", "ironlb")
	t.Cleanup(func() {
		stopSpeaker(t, n, syscall.SIGTERM)
		mustRun(t, n.NetNS, "nft", "delete", "table", "ip", "kube-proxy")
		restartSpeaker(t, n)
	})
	restartSpeaker(t, n)
	s := newScenario(t)
	s.eventually("the speaker says why forwarding is off", 10*time.Second, func() (bool, string) {
		log, err := env.ilb.SpeakerLog(s.ctx, n)
		return strings.Contains(log, "forwarding off: kube-proxy"), fmt.Sprint(err)
	})
	if out, err := lab.Exec(s.ctx, n.NetNS, "nft", "list", "table", "inet", "ironlb"); err == nil {
		t.Errorf("ironlb's table is present next to kube-proxy's:\n%s", out)
	}
}

func mustRun(t *testing.T, ns string, argv ...string) {
	t.Helper()
	if _, err := lab.Exec(context.Background(), ns, argv...); err != nil {
		t.Fatal(err)
	}
}
