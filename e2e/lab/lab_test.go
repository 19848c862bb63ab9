package lab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/internal/demo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// requireRoot fails (never skips) without root: CI runs as root and these tests are required.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this e2e test needs root (network namespaces); CI runs it as root")
	}
}

// crashHelperEnv makes the test binary act as a lab process that a test then kills with SIGKILL.
const crashHelperEnv = "IRONLB_LAB_CRASH_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashHelperEnv); dir != "" {
		os.Exit(runCrashHelper(dir))
	}
	os.Exit(m.Run())
}

func runCrashHelper(dir string) int {
	ctx := context.Background()
	l, err := Up(ctx, Config{Dir: dir, Nodes: 2})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if _, err := l.AddPod(ctx, PodSpec{Name: "orphan", Node: l.Nodes[0]}); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig // killed with SIGKILL before this in the test
	return 0
}

// TestLabSmoke: a crashed lab is cleaned up (containers and mounts of its real nodes too);
// kubelets register the nodes; pods run in containerd, answer from every node and reach the API
// server; kube-controller-manager writes the EndpointSlices; the routers are configured; and
// teardown leaves nothing behind.
func TestLabSmoke(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // other labs may run first
	defer cancel()
	linksBefore := hostLinks(t)

	// A lab process dies without tearing down: its children die with it, its namespaces stay.
	crashDir := t.TempDir()
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), crashHelperEnv+"="+crashDir)
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = helper.Process.Kill()
		t.Fatalf("crash helper did not come up: %q", line)
	}
	// What the helper leaves behind, looked at while it holds the lab lock (afterwards another
	// package's lab may start and clean it up first).
	left, err := Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	mounts, _ := mountsUnder(RuntimeRoot)
	_ = helper.Process.Kill()
	_ = helper.Wait()
	if len(left) == 0 || len(mounts) == 0 {
		t.Fatalf("the lab to kill had %d namespaces and %d mounts; the crash was not simulated", len(left), len(mounts))
	}
	t.Logf("a killed lab left %d namespaces and %d mounts behind", len(left), len(mounts))

	start := time.Now()
	l, err := Up(ctx, Config{Dir: t.TempDir(), FRR: true})
	if err != nil {
		t.Fatalf("lab after a crash: %v", err)
	}
	t.Logf("lab up in %v (3 nodes, BIRD and FRR)", time.Since(start).Round(time.Millisecond))
	downed := false
	defer func() {
		if !downed {
			l.Down(context.Background())
		}
	}()

	t.Run("API server answers and nodes are registered", func(t *testing.T) {
		nodes, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != 3 {
			t.Fatalf("got %d nodes, want 3", len(nodes.Items))
		}
		for _, n := range nodes.Items {
			want := l.Node(n.Name)
			if want == nil || len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Address != want.LAN4.String() {
				t.Errorf("node %s: addresses %v, want first %v", n.Name, n.Status.Addresses, want)
			}
			if len(n.Spec.PodCIDRs) != 2 || n.Spec.PodCIDRs[0] != want.Pod4.String() {
				t.Errorf("node %s: podCIDRs %v, want [%s %s]", n.Name, n.Spec.PodCIDRs, want.Pod4, want.Pod6)
			}
			if n.Status.NodeInfo.KubeletVersion != "v1.37.1" {
				t.Errorf("node %s: kubelet version %q, want a real kubelet v1.37.1", n.Name, n.Status.NodeInfo.KubeletVersion)
			}
		}
	})

	t.Run("the kubernetes Service has the API server as its endpoint", func(t *testing.T) {
		var got []string
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			list, err := l.Client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
			if err != nil {
				return false, nil
			}
			got = nil
			for _, s := range list.Items {
				for _, e := range s.Endpoints {
					got = append(got, e.Addresses...)
				}
			}
			return len(got) == 1 && got[0] == APIServerAddr.String(), nil
		})
		if err != nil {
			t.Fatalf("kubernetes endpoints %v, want [%s]: %v", got, APIServerAddr, err)
		}
	})

	t.Run("host kubeconfig works through the loopback proxy", func(t *testing.T) {
		kubectl := Kubectl()
		out, err := Exec(ctx, "", kubectl, "--kubeconfig", l.Kubeconfig, "get", "nodes", "-o", "name")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(out)); len(got) != 3 {
			t.Errorf("kubectl get nodes: %q", out)
		}
	})

	t.Run("each pod answers from every node", func(t *testing.T) {
		for _, n := range l.Nodes {
			p, err := l.AddPod(ctx, PodSpec{Name: "web-" + n.Name, Node: n, Labels: map[string]string{"app": "web"}})
			if err != nil {
				t.Fatal(err)
			}
			// A pod reaches the API server at its address (kubectl in a pod would).
			if _, err := Exec(ctx, p.NetNS, "bash", "-c", "exec 3<>/dev/tcp/"+APIServerAddr.String()+"/6443"); err != nil {
				t.Errorf("pod %s cannot reach the API server: %v", p.Name, err)
			}
			for _, from := range l.Nodes {
				for _, ip := range []string{p.IP4.String(), "[" + p.IP6.String() + "]"} {
					body, err := HTTPGet(ctx, from.NetNS, "http://"+ip+":8080/", 2*time.Second)
					if err != nil {
						t.Fatal(err)
					}
					if pod, _, err := demo.ParseAnswer(body); err != nil || pod != p.Name {
						t.Errorf("from %s to %s: %q (%v), want pod %s", from.Name, ip, body, err, p.Name)
					}
				}
			}
		}
	})

	t.Run("EndpointSlices follow pod readiness", func(t *testing.T) {
		svc := labService("web", map[string]string{"app": "web"})
		if _, err := l.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitReadyEndpoints(ctx, t, l, "web", 3)
		p := l.pods["default/web-node1"]
		if err := l.SetPodReady(ctx, p, false); err != nil {
			t.Fatal(err)
		}
		waitReadyEndpoints(ctx, t, l, "web", 2)
		list, err := l.Client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list.Items {
			if m := s.Labels["endpointslice.kubernetes.io/managed-by"]; m != "endpointslice-controller.k8s.io" {
				t.Errorf("EndpointSlice %s managed by %q, want kube-controller-manager's controller", s.Name, m)
			}
		}
	})

	t.Run("routers have a session configured per node", func(t *testing.T) {
		bird, err := l.Routers[0].Show(ctx, "show protocols")
		if err != nil {
			t.Fatal(err)
		}
		frr, err := l.Routers[1].Show(ctx, "show bgp summary")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range l.Nodes {
			for _, want := range []string{n.Name + " ", n.Name + "_v6"} {
				if !strings.Contains(bird, want) {
					t.Errorf("BIRD has no protocol %q:\n%s", want, bird)
				}
			}
			for _, want := range []string{n.LAN4.String(), n.LAN6.String()} {
				if !strings.Contains(frr, want) {
					t.Errorf("FRR has no neighbor %s:\n%s", want, frr)
				}
			}
		}
	})

	l.Down(ctx)
	downed = true
	err = WithLock(func() {
		if left, _ := Namespaces(); len(left) != 0 {
			t.Errorf("namespaces left after teardown: %v", left)
		}
		if after := hostLinks(t); after != linksBefore {
			t.Errorf("host links changed:\nbefore:\n%s\nafter:\n%s", linksBefore, after)
		}
		if out, _ := exec.Command("pgrep", "-a", "-f", l.Config.Dir).Output(); len(out) > 0 {
			t.Errorf("processes left after teardown:\n%s", out)
		}
		if out, _ := exec.Command("pgrep", "-a", "-f", RuntimeRoot).Output(); len(out) > 0 {
			t.Errorf("processes left after teardown:\n%s", out)
		}
		if mounts, _ := mountsUnder(RuntimeRoot); len(mounts) > 0 {
			t.Errorf("mounts left after teardown: %v", mounts)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func hostLinks(t *testing.T) string {
	out, err := Exec(context.Background(), "", "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	return strings.Join(names, " ")
}

func labService(name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
}

func waitReadyEndpoints(ctx context.Context, t *testing.T, l *Lab, svc string, want int) {
	t.Helper()
	var got int
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		slices, err := l.Client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc})
		if err != nil {
			return false, err
		}
		got = 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					got++
				}
			}
		}
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("service %s: %d ready endpoints, want %d: %v", svc, got, want, err)
	}
}

// TestKubeProxyCoexistence: with kube-proxy (nftables mode) on every node, the chart's speakers
// (--forwarding=auto) leave their nftables table out, and the Services' external IPs answer
// through kube-proxy's rules, from the LAN (L2) and from behind the router (BGP).
func TestKubeProxyCoexistence(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // other labs may run first
	defer cancel()
	var out strings.Builder
	l, err := RunDemo(ctx, Config{Dir: t.TempDir(), KubeProxy: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Down(context.Background())
	t.Log(out.String())
	for _, n := range l.Nodes {
		tables, err := Exec(ctx, n.NetNS, "nft", "list", "tables")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(tables), "table ip kube-proxy") || strings.Contains(string(tables), "table inet ironlb") {
			t.Errorf("%s's nftables tables:\n%s\nwant kube-proxy's and not ironlb's", n.Name, tables)
		}
	}
	for svc, ns := range map[string]string{DemoL2Service: NSLANClient, DemoBGPService: NSExtClient} {
		got, err := l.Client.CoreV1().Services(DemoNamespace).Get(ctx, svc, metav1.GetOptions{})
		if err != nil || len(got.Status.LoadBalancer.Ingress) == 0 {
			t.Fatalf("Service %s: no external IP (%v)", svc, err)
		}
		ip := got.Status.LoadBalancer.Ingress[0].IP
		var body string
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			body, err = HTTPGet(ctx, ns, "http://"+ip+"/", time.Second)
			return err == nil, nil
		})
		if err != nil {
			t.Errorf("%s (%s) does not answer from %s through kube-proxy: %v", svc, ip, ns, err)
		} else if _, _, err := demo.ParseAnswer(body); err != nil {
			t.Errorf("%s: %v", svc, err)
		}
	}
}
