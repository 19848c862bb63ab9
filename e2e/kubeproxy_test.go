package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/e2e/lab"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestForwardingMatchesKubeProxy is the differential test of ironlb's data plane (package
// forward) against kube-proxy v1.37.1 in nftables mode, its reference: the same Services and
// pods, every scenario of diffCatalogue probed first through ironlb's table (the chart's
// default, --forwarding=auto), then through kube-proxy's on every node (ironlb steps aside), and
// the two records compared. A difference fails the test unless forward/README.md's table of
// differences lists it with both outcomes; a listed difference that no longer shows fails it too.
//
// The lab: web-a on node1 and web-b on node2 serve every Service; cli on node3 is the pod that
// connects. The LAN client routes the test's LoadBalancer IPs and externalIPs to node1, as a
// router would after an announcement (no advertisement: which node receives does not depend on
// an election), so "outside" traffic to them enters node1.
func TestForwardingMatchesKubeProxy(t *testing.T) {
	start := time.Now()
	d := setUpDiff(t)
	t.Logf("set up in %v", time.Since(start).Round(time.Second))
	ironlb := d.runPhase(t, "ironlb")
	t.Logf("ironlb phase done at %v", time.Since(start).Round(time.Second))
	d.switchToKubeProxy(t)
	kubeProxy := d.runPhase(t, "kube-proxy")
	t.Logf("kube-proxy phase done at %v", time.Since(start).Round(time.Second))

	listed, err := readListedDifferences("../forward/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range diffCases() {
		got, want := ironlb[c.name], kubeProxy[c.name]
		row, isListed := listed[c.name]
		delete(listed, c.name)
		switch {
		case got == want && isListed:
			t.Errorf("%s: listed as a difference in forward/README.md but both give %q: remove the row", c.name, got)
		case got == want:
			t.Logf("%-40s same: %s", c.name, got)
		case !isListed:
			t.Errorf("%s: ironlb %q, kube-proxy %q: fix it, or list it in forward/README.md with why it is better:\n| %s | %s | %s | ... |",
				c.name, got, want, c.name, got, want)
		case row.ironlb != got || row.kubeProxy != want:
			t.Errorf("%s: ironlb %q, kube-proxy %q; forward/README.md lists ironlb %q, kube-proxy %q", c.name, got, want, row.ironlb, row.kubeProxy)
		default:
			t.Logf("%-40s listed: ironlb %s; kube-proxy %s", c.name, got, want)
		}
	}
	for name := range listed {
		t.Errorf("forward/README.md lists a difference for %q, which is no scenario of the catalogue", name)
	}
}

// diffCase is one scenario: a probe of one frontend from one place.
type diffCase struct {
	name string // service/frontend/from
	from string // fromOutside, a node name, fromPod or fromWebA
	kind probeKind
	addr func(d *diffEnv) string
}

const (
	fromOutside = "outside" // the LAN client
	fromPod     = "pod"     // cli, on node3
	fromWebA    = "web-a"   // an endpoint itself (hairpin)
)

// diffCases is the catalogue. A case of kind scripted runs diffEnv.scripted's function of its
// name instead of a probe.
func diffCases() []diffCase {
	return []diffCase{
		// externalTrafficPolicy Cluster; TCP and UDP on port 80.
		{"web/lb4/outside", fromOutside, httpSpread, lb("web", 4, 80)},
		{"web/lb6/outside", fromOutside, httpSpread, lb("web", 6, 80)},
		{"web/udp-lb4/outside", fromOutside, udpSpread, lb("web", 4, 80)},
		{"web/udp-lb6/outside", fromOutside, udpSpread, lb("web", 6, 80)},
		{"web/nodeport4/outside-via-node3", fromOutside, httpSpread, nodePort("web", "node3", 4)},
		{"web/nodeport6/outside-via-node3", fromOutside, httpSpread, nodePort("web", "node3", 6)},
		{"web/lb4/node1", "node1", httpSpread, lb("web", 4, 80)},
		{"web/lb4/pod", fromPod, httpSpread, lb("web", 4, 80)},
		{"web/clusterip4/node1", "node1", httpSpread, clusterIP("web", 4, 80)},
		{"web/clusterip4/node3", "node3", httpSpread, clusterIP("web", 4, 80)},
		{"web/clusterip4/pod", fromPod, httpSpread, clusterIP("web", 4, 80)},
		{"web/clusterip6/pod", fromPod, httpSpread, clusterIP("web", 6, 80)},
		{"web/clusterip4/hairpin", fromWebA, httpSpread, clusterIP("web", 4, 80)},
		{"web/clusterip6/hairpin", fromWebA, httpSpread, clusterIP("web", 6, 80)},
		{"web/lb4-unused-port/node3", "node3", httpSpread, lb("web", 4, 81)},

		// externalTrafficPolicy Local: node1 has an endpoint, node3 none.
		{"local/lb4/outside", fromOutside, httpSpread, lb("local", 4, 80)},
		{"local/lb6/outside", fromOutside, httpSpread, lb("local", 6, 80)},
		{"local/nodeport4/outside-via-node1", fromOutside, httpSpread, nodePort("local", "node1", 4)},
		{"local/nodeport6/outside-via-node1", fromOutside, httpSpread, nodePort("local", "node1", 6)},
		{"local/nodeport4/outside-via-node3", fromOutside, httpSpread, nodePort("local", "node3", 4)},
		{"local/nodeport6/outside-via-node3", fromOutside, httpSpread, nodePort("local", "node3", 6)},
		{"local/lb4/node3", "node3", httpSpread, lb("local", 4, 80)},
		{"local/lb4/node2", "node2", httpSpread, lb("local", 4, 80)},
		{"local/lb4/pod", fromPod, httpSpread, lb("local", 4, 80)},
		{"local/health4/node1", fromOutside, healthGet, healthPort("local", "node1", 4)},
		{"local/health6/node1", fromOutside, healthGet, healthPort("local", "node1", 6)},
		{"local/health4/node3", fromOutside, healthGet, healthPort("local", "node3", 4)},
		// externalIPs of the same Service (Local policy too): node1 receives them.
		{"local/ext4/outside", fromOutside, httpSpread, externalIP("local", 4, 80)},
		{"local/ext6/outside", fromOutside, httpSpread, externalIP("local", 6, 80)},

		// allocateLoadBalancerNodePorts false, Local policy.
		{"nonp/lb4/outside", fromOutside, httpSpread, lb("nonp", 4, 80)},
		{"nonp/health4/node2", fromOutside, healthGet, healthPort("nonp", "node2", 4)},

		// internalTrafficPolicy Local.
		{"itp/clusterip4/node1", "node1", httpSpread, clusterIP("itp", 4, 80)},
		{"itp/clusterip4/pod", fromPod, httpSpread, clusterIP("itp", 4, 80)},
		{"itp/clusterip6/pod", fromPod, httpSpread, clusterIP("itp", 6, 80)},

		// sessionAffinity ClientIP (timeout 10 s).
		{"aff/lb4/outside", fromOutside, httpSticky, lb("aff", 4, 80)},
		{"aff/lb6/outside", fromOutside, httpSticky, lb("aff", 6, 80)},
		{"aff/clusterip4/pod", fromPod, httpSticky, clusterIP("aff", 4, 80)},
		// sessionAffinity ClientIP (timeout 2 s): picked anew after the timeout without traffic
		// (affinityExpiry, IPv4 and IPv6 at once).
		{"affexp/lb4+lb6/outside-after-timeout", fromOutside, scripted, nil},

		// No endpoints.
		{"empty/lb4/outside", fromOutside, httpSpread, lb("empty", 4, 80)},
		{"empty/lb6/outside", fromOutside, httpSpread, lb("empty", 6, 80)},
		{"empty/udp-lb4/outside", fromOutside, udpSpread, lb("empty", 4, 80)},
		{"empty/udp-lb6/outside", fromOutside, udpSpread, lb("empty", 6, 80)},
		{"empty/nodeport4/outside-via-node3", fromOutside, httpSpread, nodePort("empty", "node3", 4)},
		{"empty/clusterip4/pod", fromPod, httpSpread, clusterIP("empty", 4, 80)},
		{"empty/clusterip6/node3", "node3", httpSpread, clusterIP("empty", 6, 80)},

		// Only terminating endpoints: web-a's no longer serving, web-b's still serving.
		{"term/lb4/outside", fromOutside, httpSpread, lb("term", 4, 80)},

		// loadBalancerSourceRanges: "allow" holds the LAN client, "deny" does not.
		{"allow/lb4/outside", fromOutside, httpSpread, lb("allow", 4, 80)},
		{"allow/lb6/outside", fromOutside, httpSpread, lb("allow", 6, 80)},
		{"allow/lb4/pod", fromPod, httpSpread, lb("allow", 4, 80)},
		{"allow/lb4/node3", "node3", httpSpread, lb("allow", 4, 80)},
		{"deny/lb4/outside", fromOutside, httpSpread, lb("deny", 4, 80)},
		{"deny/lb6/outside", fromOutside, httpSpread, lb("deny", 6, 80)},
		{"deny/nodeport4/outside-via-node3", fromOutside, httpSpread, nodePort("deny", "node3", 4)},

		// spec.externalIPs (type ClusterIP).
		{"extip/ext4/outside", fromOutside, httpSpread, externalIP("extip", 4, 80)},
		{"extip/ext6/outside", fromOutside, httpSpread, externalIP("extip", 6, 80)},

		// ipMode Proxy: the "load balancer" is the LAN client, which has the address and no
		// listener: not DNATed, the client's kernel resets the connection.
		{"proxy/lb4/node3", "node3", httpSpread, at(proxyIPs[0], 80)},
		{"proxy/lb6/node3", "node3", httpSpread, at(proxyIPs[1], 80)},

		// trafficDistribution PreferClose: node1 (zone z1) has web-a, node3 (z3) no endpoint.
		{"prefer/clusterip4/node1", "node1", httpSpread, clusterIP("prefer", 4, 80)},
		{"prefer/clusterip6/node1", "node1", httpSpread, clusterIP("prefer", 6, 80)},
		{"prefer/clusterip4/node3", "node3", httpSpread, clusterIP("prefer", 4, 80)},

		// 102 endpoints in 51 EndpointSlices.
		{"many/clusterip4/pod", fromPod, httpSpread, clusterIP("many", 4, 80)},

		// UDP from a fixed source port while its endpoint stops being ready, or leaves the
		// EndpointSlice (udpEndpointGone).
		{"web/udp-lb4/outside-endpoint-not-ready", fromOutside, scripted, nil},
		{"udpdel/udp-lb4/outside-endpoint-deleted", fromOutside, scripted, nil},
		{"udpdel/udp-lb6/outside-endpoint-deleted", fromOutside, scripted, nil},
	}
}

// scripted are the catalogue's cases that change the cluster or wait, by name.
func (d *diffEnv) scripted() map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"affexp/lb4+lb6/outside-after-timeout": func(*testing.T) string {
			var out [2]string // both families at once: each waits seconds
			var g errgroup.Group
			for i, f := range []int{4, 6} {
				g.Go(func() error { out[i] = fmt.Sprintf("IPv%d %s", f, d.affinityExpiry(f)); return nil })
			}
			_ = g.Wait()
			return out[0] + "; " + out[1]
		},
		"web/udp-lb4/outside-endpoint-not-ready": func(t *testing.T) string {
			return d.udpEndpointGone(t, lb("web", 4, 80)(d), d.notReady(t))
		},
		"udpdel/udp-lb4/outside-endpoint-deleted": func(t *testing.T) string {
			return d.udpEndpointGone(t, lb("udpdel", 4, 80)(d), d.dropFromSlice(t, "udpdel-4"))
		},
		"udpdel/udp-lb6/outside-endpoint-deleted": func(t *testing.T) string {
			return d.udpEndpointGone(t, lb("udpdel", 6, 80)(d), d.dropFromSlice(t, "udpdel-6"))
		},
	}
}

// The test's addresses: a pool no advertisement announces (the LAN client routes it to
// node1), externalIPs next to it, the ipMode Proxy addresses the LAN client holds, and the
// first of the LAN client's extra addresses (affinityExpiry's clients).
var (
	diffPool     = []string{"203.0.113.176-203.0.113.187", "2001:db8:113:1::-2001:db8:113:1::b"}
	diffRoutes   = []string{"203.0.113.176/28", "2001:db8:113:1::/124"}
	diffExtIPs   = []string{"203.0.113.190", "2001:db8:113:1::f"}
	localExtIPs  = []string{"203.0.113.188", "2001:db8:113:1::c"}
	proxyIPs     = []string{"198.51.100.199", "2001:db8:100::199"}
	expiryFirsts = []netip.Addr{netip.MustParseAddr("198.51.100.160"), netip.MustParseAddr("2001:db8:100::160")}
)

const (
	manyPorts   = 51 // EndpointSlices of "many", one port each, web-a and web-b in each
	manyPort0   = 9000
	zoneLabel   = "topology.kubernetes.io/zone"
	managedBy   = "e2e.ironlb.io"
	otherLBName = "example.com/proxying-lb" // the class of "proxy", a load balancer that is not ironlb
)

// diffEnv is the test's cluster state.
type diffEnv struct {
	s              *scenario
	webA, webB, cl *lab.Pod
	svcs           map[string]*corev1.Service
	prober         *prober
	udpPort        int // the last fixed client port of udpEndpointGone, one per run
}

// at is a fixed address and port.
func at(ip string, port int) func(*diffEnv) string {
	return func(*diffEnv) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
}

func lb(svc string, family, port int) func(*diffEnv) string {
	return func(d *diffEnv) string {
		var ips []string
		for _, in := range d.svcs[svc].Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		return addrOf(ips, family, port, "ingress-ip")
	}
}

func clusterIP(svc string, family, port int) func(*diffEnv) string {
	return func(d *diffEnv) string { return addrOf(d.svcs[svc].Spec.ClusterIPs, family, port, "cluster-ip") }
}

func externalIP(svc string, family, port int) func(*diffEnv) string {
	return func(d *diffEnv) string { return addrOf(d.svcs[svc].Spec.ExternalIPs, family, port, "external-ip") }
}

// addrOf is the first of ips in family (4 or 6) with port, or "no-<what>:0".
func addrOf(ips []string, family, port int, what string) string {
	for _, ip := range ips {
		if netip.MustParseAddr(ip).Is4() == (family == 4) {
			return net.JoinHostPort(ip, strconv.Itoa(port))
		}
	}
	return "no-" + what + ":0"
}

func nodeAddr(node string, family int) string {
	n := env.lab.Node(node)
	if family == 4 {
		return n.LAN4.String()
	}
	return n.LAN6.String()
}

func nodePort(svc, node string, family int) func(*diffEnv) string {
	return func(d *diffEnv) string {
		return net.JoinHostPort(nodeAddr(node, family), strconv.Itoa(int(d.svcs[svc].Spec.Ports[0].NodePort)))
	}
}

func healthPort(svc, node string, family int) func(*diffEnv) string {
	return func(d *diffEnv) string {
		return net.JoinHostPort(nodeAddr(node, family), strconv.Itoa(int(d.svcs[svc].Spec.HealthCheckNodePort)))
	}
}

// setUpDiff creates the pods, the Services and the probe counters, and everything is removed
// at the end.
func setUpDiff(t *testing.T) *diffEnv {
	s := newScenario(t)
	ctx := s.ctx
	d := &diffEnv{s: s, svcs: map[string]*corev1.Service{}}
	nodes := env.lab.Nodes
	if len(nodes) < 3 {
		t.Fatalf("the lab has %d nodes, the test needs 3", len(nodes))
	}
	// Zones for PreferClose, before the pods: the EndpointSlice controller reads them then.
	for i, n := range nodes {
		if _, err := env.lab.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType,
			fmt.Appendf(nil, `{"metadata":{"labels":{%q:"z%d"}}}`, zoneLabel, i+1), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		s.undo = append(s.undo, func() {
			_, _ = env.lab.Client.CoreV1().Nodes().Patch(context.Background(), n.Name, types.MergePatchType,
				fmt.Appendf(nil, `{"metadata":{"labels":{%q:null}}}`, zoneLabel), metav1.PatchOptions{})
		})
	}
	pool := s.ns + "-diff"
	s.apply("ippools", &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: pool}, Spec: v1alpha1.IPPoolSpec{Addresses: diffPool, AutoAssign: ptr(false)}})
	node1 := nodes[0]
	// The LAN client's routes, and addresses that are never its source unless bound to (IPv6
	// ones deprecated: the kernel would pick the last added).
	var client, undo []string
	for i, r := range diffRoutes {
		client = append(client, "route add "+r+" via "+nodeAddr(node1.Name, []int{4, 6}[i]))
		undo = append(undo, "route del "+r)
	}
	addrs := append([]netip.Addr{netip.MustParseAddr(proxyIPs[0]), netip.MustParseAddr(proxyIPs[1])},
		append(expiryClients(4), expiryClients(6)...)...)
	for _, a := range addrs {
		p := netip.PrefixFrom(a, a.BitLen()).String()
		line := "addr add " + p + " dev eth0"
		if a.Is6() {
			line += " nodad preferred_lft 0"
		}
		client = append(client, line)
		undo = append(undo, "addr del "+p+" dev eth0")
	}
	s.undo = append(s.undo, func() { _ = lab.IPBatch(context.Background(), lab.NSLANClient, undo...) })
	if err := lab.IPBatch(ctx, lab.NSLANClient, client...); err != nil {
		t.Fatal(err)
	}

	// The pods, in parallel: each takes seconds to start.
	ports := []int{8080}
	for i := range manyPorts {
		ports = append(ports, manyPort0+i)
	}
	specs := []lab.PodSpec{
		{Namespace: s.ns, Name: "web-a", Node: nodes[0], Labels: map[string]string{"app": "web"}, TCPPorts: ports, UDPPorts: []int{8080}},
		{Namespace: s.ns, Name: "web-b", Node: nodes[1], Labels: map[string]string{"app": "web"}, TCPPorts: ports, UDPPorts: []int{8080}},
		{Namespace: s.ns, Name: "cli", Node: nodes[2], Labels: map[string]string{"app": "cli"}},
	}
	pods := make([]*lab.Pod, len(specs))
	var g errgroup.Group
	for i, spec := range specs {
		g.Go(func() (err error) { pods[i], err = env.lab.AddPod(ctx, spec); return err })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	d.webA, d.webB, d.cl = pods[0], pods[1], pods[2]
	s.undo = append(s.undo, func() {
		for _, p := range pods {
			_ = env.lab.Client.CoreV1().Pods(s.ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{})
		}
	})

	d.createServices(t, pool)
	d.prober = &prober{names: map[netip.Addr]string{lab.ClientLAN4: "lan-client", lab.ClientLAN6: "lan-client"}}
	for _, n := range nodes {
		d.prober.names[n.LAN4], d.prober.names[n.LAN6] = n.Name, n.Name
		d.prober.names[n.Pod4.Addr().Next()], d.prober.names[n.Pod6.Addr().Next()] = n.Name+"-cni0", n.Name+"-cni0"
	}
	for _, p := range pods {
		d.prober.names[p.IP4], d.prober.names[p.IP6] = p.Name, p.Name
	}
	for _, ns := range d.probeNamespaces() {
		if err := addProbeTable(ctx, ns); err != nil {
			t.Fatal(err)
		}
		s.undo = append(s.undo, func() { deleteProbeTable(context.Background(), ns) })
	}
	return d
}

// probeNamespaces are where probes start, by diffCase.from.
func (d *diffEnv) probeNamespaces() map[string]string {
	m := map[string]string{fromOutside: lab.NSLANClient, fromPod: d.cl.NetNS, fromWebA: d.webA.NetNS}
	for _, n := range env.lab.Nodes {
		m[n.Name] = n.NetNS
	}
	return m
}

// createServices creates the catalogue's Services and waits for their addresses.
func (d *diffEnv) createServices(t *testing.T, pool string) {
	s := d.s
	dual := ptr(corev1.IPFamilyPolicyRequireDualStack)
	local := corev1.ServiceExternalTrafficPolicyLocal
	http := corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}
	base := func(typ corev1.ServiceType, app string) corev1.ServiceSpec {
		spec := corev1.ServiceSpec{Type: typ, IPFamilyPolicy: dual, Ports: []corev1.ServicePort{http}}
		if app != "" {
			spec.Selector = map[string]string{"app": app}
		}
		return spec
	}
	specs := map[string]func(*corev1.ServiceSpec){
		"web": func(sp *corev1.ServiceSpec) {
			sp.Ports = append(sp.Ports, corev1.ServicePort{Name: "dns", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolUDP})
		},
		"local": func(sp *corev1.ServiceSpec) {
			sp.ExternalTrafficPolicy = local
			sp.ExternalIPs = localExtIPs
		},
		"nonp": func(sp *corev1.ServiceSpec) {
			sp.ExternalTrafficPolicy = local
			sp.AllocateLoadBalancerNodePorts = ptr(false)
		},
		"aff": func(sp *corev1.ServiceSpec) {
			sp.SessionAffinity = corev1.ServiceAffinityClientIP
			sp.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(10))}}
		},
		"affexp": func(sp *corev1.ServiceSpec) {
			sp.SessionAffinity = corev1.ServiceAffinityClientIP
			sp.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(affinityTimeout / time.Second))}}
		},
		"udpdel": func(sp *corev1.ServiceSpec) {
			sp.Selector = nil
			sp.Ports = []corev1.ServicePort{{Name: "dns", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolUDP}}
		},
		"empty": func(sp *corev1.ServiceSpec) {
			sp.Selector = map[string]string{"app": "nobody"}
			sp.Ports = append(sp.Ports, corev1.ServicePort{Name: "dns", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolUDP})
		},
		"term": func(sp *corev1.ServiceSpec) { sp.Selector = nil; sp.IPFamilyPolicy = nil },
		"allow": func(sp *corev1.ServiceSpec) {
			sp.LoadBalancerSourceRanges = []string{"198.51.100.2/32", "2001:db8:100::2/128"}
		},
		"deny": func(sp *corev1.ServiceSpec) {
			sp.LoadBalancerSourceRanges = []string{"192.0.2.128/25", "2001:db8:200::/64"}
		},
	}
	for name, mutate := range specs {
		spec := base(corev1.ServiceTypeLoadBalancer, "web")
		mutate(&spec)
		d.create(t, name, pool, spec)
	}
	itp := base(corev1.ServiceTypeClusterIP, "web")
	itp.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	d.create(t, "itp", "", itp)
	ext := base(corev1.ServiceTypeClusterIP, "web")
	ext.ExternalIPs = diffExtIPs
	d.create(t, "extip", "", ext)
	prefer := base(corev1.ServiceTypeClusterIP, "web")
	prefer.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferClose)
	d.create(t, "prefer", "", prefer)
	many := base(corev1.ServiceTypeClusterIP, "")
	many.IPFamilyPolicy = nil
	d.create(t, "many", "", many)
	proxy := base(corev1.ServiceTypeLoadBalancer, "web")
	proxy.LoadBalancerClass = ptr(otherLBName)
	d.create(t, "proxy", "", proxy)

	// The load balancer of class otherLBName proxies: its status says so.
	svc := d.svcs["proxy"].DeepCopy()
	svc.Status.LoadBalancer.Ingress = nil
	for _, ip := range proxyIPs {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip, IPMode: ptr(corev1.LoadBalancerIPModeProxy)})
	}
	if _, err := env.lab.Client.CoreV1().Services(s.ns).UpdateStatus(s.ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Endpoints the EndpointSlice controller cannot make: terminating ones, more than 100, and
	// slices the test changes (udpdel).
	ep := func(p *lab.Pod, family int, ready, serving, terminating bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{p.Addr(family).String()}, NodeName: &p.Node.Name,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating}}
	}
	port := func(name string, port int32, proto corev1.Protocol) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto}
	}
	d.slice(t, "term", "term-1", 4, port("http", 8080, corev1.ProtocolTCP), ep(d.webA, 4, false, false, true), ep(d.webB, 4, false, true, true))
	for i := range manyPorts {
		d.slice(t, "many", fmt.Sprintf("many-%d", i), 4, port("http", int32(manyPort0+i), corev1.ProtocolTCP),
			ep(d.webA, 4, true, true, false), ep(d.webB, 4, true, true, false))
	}
	for _, f := range []int{4, 6} {
		d.slice(t, "udpdel", fmt.Sprint("udpdel-", f), f, port("dns", 8080, corev1.ProtocolUDP),
			ep(d.webA, f, true, true, false), ep(d.webB, f, true, true, false))
	}

	for name := range d.svcs {
		svc := d.svcs[name]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || name == "proxy" {
			continue
		}
		want := len(svc.Spec.IPFamilies)
		s.eventually("the LoadBalancer IPs of "+name, 20*time.Second, func() (bool, string) {
			got, err := env.lab.Client.CoreV1().Services(s.ns).Get(s.ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			d.svcs[name] = got
			return len(got.Status.LoadBalancer.Ingress) == want, fmt.Sprint(got.Status.LoadBalancer)
		})
	}
	d.svcs["proxy"] = s.svc("proxy")
}

// create creates Service name (from pool when it is a LoadBalancer) and records it.
func (d *diffEnv) create(t *testing.T, name, pool string, spec corev1.ServiceSpec) {
	s := d.s
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name}, Spec: spec}
	if pool != "" {
		svc.Annotations = map[string]string{v1alpha1.AnnotationPool: pool}
	}
	got, err := env.lab.Client.CoreV1().Services(s.ns).Create(s.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Service %s: %v", name, err)
	}
	d.svcs[name] = got
	s.undo = append(s.undo, func() {
		_ = env.lab.Client.CoreV1().Services(s.ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// slice creates an EndpointSlice of Service svc of address family 4 or 6 with one port.
func (d *diffEnv) slice(t *testing.T, svc, name string, family int, port discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) {
	s := d.s
	typ := discoveryv1.AddressTypeIPv4
	if family == 6 {
		typ = discoveryv1.AddressTypeIPv6
	}
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: managedBy,
		}},
		AddressType: typ,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{port},
	}
	if _, err := env.lab.Client.DiscoveryV1().EndpointSlices(s.ns).Create(s.ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating EndpointSlice %s: %v", name, err)
	}
}

// runPhase waits until the data plane of every node has the Services, then runs the catalogue
// and returns each scenario's outcome.
func (d *diffEnv) runPhase(t *testing.T, phase string) map[string]string {
	s := d.s
	start := time.Now()
	d.waitProgrammed(t, phase)
	t.Logf("%s: every node programmed after %v", phase, time.Since(start).Round(100*time.Millisecond))
	out := map[string]string{}
	ns := d.probeNamespaces()
	scripts := d.scripted()
	for _, c := range diffCases() {
		if c.kind != scripted {
			out[c.name] = d.prober.probe(s.ctx, ns[c.from], c.kind, c.addr(d))
		} else if run := scripts[c.name]; run != nil {
			out[c.name] = run(t)
		} else {
			t.Fatalf("%s: no script", c.name)
		}
		t.Logf("%s %-40s %s", phase, c.name, out[c.name])
	}
	return out
}

// waitProgrammed waits until every node's ruleset (ironlb's table, or kube-proxy's) holds
// every Service address and both pods' addresses, and Local's health check answers.
func (d *diffEnv) waitProgrammed(t *testing.T, phase string) {
	s := d.s
	var want []string
	for name, svc := range d.svcs {
		want = append(want, svc.Spec.ClusterIPs...)
		if name != "proxy" {
			for _, in := range svc.Status.LoadBalancer.Ingress {
				want = append(want, in.IP)
			}
		}
	}
	for _, p := range []*lab.Pod{d.webA, d.webB} {
		want = append(want, p.IP4.String(), p.IP6.String())
	}
	for _, n := range env.lab.Nodes {
		s.eventually(phase+"'s rules on "+n.Name, 60*time.Second, func() (bool, string) {
			out, err := lab.Exec(s.ctx, n.NetNS, "nft", "list", "ruleset")
			if err != nil {
				return false, err.Error()
			}
			have := map[string]bool{}
			for _, f := range strings.FieldsFunc(string(out), func(r rune) bool { return !strings.ContainsRune("0123456789abcdef.:", r) }) {
				have[f] = true
			}
			for _, w := range want {
				if !have[w] {
					return false, "no " + w
				}
			}
			return true, ""
		})
	}
	hc := healthPort("local", "node1", 4)(d)
	s.eventually(phase+"'s health check of local on node1", 30*time.Second, func() (bool, string) {
		got := d.prober.health(s.ctx, lab.NSLANClient, hc)
		return strings.HasPrefix(got, "200"), got
	})
}

// switchToKubeProxy hands forwarding over to kube-proxy on every node, as a cluster that runs
// it would have: a stand-in kube-proxy table first, so that ironlb's speakers
// (--forwarding=auto) delete their table and stop serving health checks before kube-proxy
// opens the same ports; then kube-proxy itself. At the end of the test kube-proxy stops and its
// tables go, and ironlb takes over again (the other tests need it).
func (d *diffEnv) switchToKubeProxy(t *testing.T) {
	s := d.s
	ctx := s.ctx
	var procs []*lab.Process
	t.Cleanup(func() {
		ctx := context.Background()
		for _, p := range procs {
			p.Stop(os.Interrupt, 10*time.Second)
		}
		for _, n := range env.lab.Nodes {
			if err := lab.DeleteKubeProxyRules(ctx, n); err != nil {
				t.Error(err)
			}
		}
		for _, n := range env.lab.Nodes {
			s.eventually("ironlb's table back on "+n.Name, 60*time.Second, func() (bool, string) {
				_, err := lab.Exec(ctx, n.NetNS, "nft", "list", "table", "inet", "ironlb")
				return err == nil, fmt.Sprint(err)
			})
		}
	})
	for _, n := range env.lab.Nodes {
		mustRun(t, n.NetNS, "nft", "add", "table", "ip", "kube-proxy")
	}
	for _, n := range env.lab.Nodes {
		s.eventually("ironlb's table gone from "+n.Name, 30*time.Second, func() (bool, string) {
			_, err := lab.Exec(ctx, n.NetNS, "nft", "list", "table", "inet", "ironlb")
			return err != nil, "present"
		})
	}
	for _, n := range env.lab.Nodes {
		p, err := env.lab.StartKubeProxy(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
}

// listedDifference is a row of forward/README.md's table of differences from kube-proxy.
type listedDifference struct{ ironlb, kubeProxy, reason string }

// readListedDifferences reads the table between the markers in forward/README.md: one row per
// scenario, "| scenario | ironlb's outcome | kube-proxy's outcome | reason |".
func readListedDifferences(path string) (map[string]listedDifference, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the listed differences: %w", err)
	}
	const begin, end = "<!-- kube-proxy differences: begin -->", "<!-- kube-proxy differences: end -->"
	_, rest, ok := strings.Cut(string(b), begin)
	table, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		return nil, fmt.Errorf("%s: no table between %q and %q", path, begin, end)
	}
	out := map[string]listedDifference{}
	for _, line := range strings.Split(strings.TrimSpace(table), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 4 {
			return nil, fmt.Errorf("%s: row %q: want 4 cells (scenario, ironlb, kube-proxy, reason)", path, line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == "scenario" || strings.HasPrefix(cells[0], "---") {
			continue
		}
		name := strings.Trim(cells[0], "`")
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s: scenario %s listed twice", path, name)
		}
		out[name] = listedDifference{ironlb: cells[1], kubeProxy: cells[2], reason: cells[3]}
	}
	return out, nil
}
