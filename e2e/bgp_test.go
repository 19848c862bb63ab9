package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/e2e/lab"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bgpSetup creates BGPPeers for BIRD (eBGP, IPv4 and IPv6 sessions) and FRR (iBGP), a pool
// and a BGPAdvertisement with communities and a local preference.
func (s *scenario) bgpSetup(addrs []string, mutate func(*v1alpha1.BGPAdvertisementSpec)) string {
	name := s.ns + "-bgp"
	hold := &metav1.Duration{Duration: 9 * time.Second}
	keep := &metav1.Duration{Duration: 3 * time.Second}
	for peer, spec := range map[string]v1alpha1.BGPPeerSpec{
		"bird":    {PeerAddress: lab.RouterLAN4.String(), PeerASN: lab.RouterASN, MyASN: lab.NodeASN, HoldTime: hold, KeepaliveTime: keep},
		"bird-v6": {PeerAddress: lab.RouterLAN6.String(), PeerASN: lab.RouterASN, MyASN: lab.NodeASN, HoldTime: hold, KeepaliveTime: keep},
		"frr":     {PeerAddress: lab.FRRLAN4.String(), PeerASN: lab.NodeASN, MyASN: lab.NodeASN, HoldTime: hold, KeepaliveTime: keep},
	} {
		s.apply("bgppeers", &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: s.ns + "-" + peer}, Spec: spec})
	}
	s.apply("ippools", &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs, AutoAssign: ptr(false)}})
	ad := v1alpha1.BGPAdvertisementSpec{IPPools: []string{name}, Communities: []string{"64497:100", "large:64497:7:9"}, LocalPref: ptr(uint32(250))}
	if mutate != nil {
		mutate(&ad)
	}
	s.apply("bgpadvertisements", &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: ad})
	return name
}

// birdRoute returns BIRD's description of prefix ("" when it has no route).
func birdRoute(t testing.TB, prefix string) string {
	out, err := env.lab.Routers[0].Show(t.Context(), "show route for "+prefix+" all")
	if err != nil {
		return ""
	}
	return out
}

// birdNextHops returns the next hops of BIRD's route for prefix, sorted.
func birdNextHops(t testing.TB, prefix string) []string {
	var hops []string
	for _, line := range strings.Split(birdRoute(t, prefix), "\n") {
		// "\tvia 198.51.100.11 on eth0 weight 1" (multipath) or "... via 198.51.100.11 on eth0"
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "via" && !slices.Contains(hops, f[i+1]) {
				hops = append(hops, f[i+1])
			}
		}
	}
	slices.Sort(hops)
	return hops
}

func nodeLAN(family int) []string {
	var out []string
	for _, n := range env.lab.Nodes {
		if family == 4 {
			out = append(out, n.LAN4.String())
		} else {
			out = append(out, n.LAN6.String())
		}
	}
	slices.Sort(out)
	return out
}

// TestBGPWithBIRD: a Service IP appears at BIRD with every node as next hop (ECMP), with the
// advertisement's communities; it answers from behind the router; deleting the Service
// withdraws it.
func TestBGPWithBIRD(t *testing.T) {
	s := newScenario(t)
	pool := s.bgpSetup([]string{"203.0.113.16/28", "2001:db8:113::/120"}, nil)
	s.pods("routed", env.lab.Nodes...)
	s.service("routed", "routed", pool, func(svc *corev1.Service) {
		svc.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	})
	ips := s.ingress("routed")
	v4, v6 := ips[0]+"/32", ips[1]+"/128"
	s.eventually("ECMP over all nodes at BIRD for "+v4, 30*time.Second, func() (bool, string) {
		return slices.Equal(birdNextHops(t, v4), nodeLAN(4)), birdRoute(t, v4)
	})
	route := birdRoute(t, v4)
	for _, want := range []string{"(64497,100)", "(64497, 7, 9)"} {
		if !strings.Contains(route, want) {
			t.Errorf("BIRD's route lacks community %s:\n%s", want, route)
		}
	}
	t.Run("IPv6 session and prefix", func(t *testing.T) {
		s := s.with(t)
		s.eventually("ECMP over all nodes at BIRD for "+v6, 30*time.Second, func() (bool, string) {
			return slices.Equal(birdNextHops(t, v6), nodeLAN(6)), birdRoute(t, v6)
		})
	})
	t.Run("answers from behind the router", func(t *testing.T) {
		s := s.with(t)
		s.eventually("an answer through "+ips[0], 15*time.Second, func() (bool, string) {
			_, _, err := get(s.ctx, lab.NSExtClient, ips[0])
			return err == nil, fmt.Sprint(err)
		})
	})
	t.Run("FRR (iBGP) sees ECMP next hops and the local preference", func(t *testing.T) {
		s := s.with(t)
		s.eventually("FRR's multipath route for "+v4, 30*time.Second, func() (bool, string) {
			hops, lp, raw := frrRoute(t, v4)
			return slices.Equal(hops, nodeLAN(4)) && lp == 250, fmt.Sprintf("hops=%v localpref=%d\n%s", hops, lp, raw)
		})
	})
	t.Run("one ServiceAnnouncement lists every announcing node", func(t *testing.T) {
		s := s.with(t)
		var want []string
		for _, n := range env.lab.Nodes {
			want = append(want, n.Name)
		}
		slices.Sort(want)
		s.eventually("routed.bgp listing "+strings.Join(want, ","), 20*time.Second, func() (bool, string) {
			var list v1alpha1.ServiceAnnouncementList
			if err := s.crd.Get().Namespace(s.ns).Resource("serviceannouncements").Do(s.ctx).Into(&list); err != nil {
				return false, err.Error()
			}
			var got []string
			ok := false
			for _, a := range list.Items {
				got = append(got, fmt.Sprintf("%s mode=%s node=%q nodes=%v ips=%v", a.Name, a.Mode, a.NodeName, a.Nodes, a.IPs))
				ok = ok || (a.Name == "routed.bgp" && slices.Equal(a.Nodes, want) && slices.Equal(a.IPs, ips))
			}
			return ok && len(list.Items) == 1, strings.Join(got, "; ")
		})
	})
	t.Run("withdrawn when the Service is deleted", func(t *testing.T) {
		s := s.with(t)
		if err := env.lab.Client.CoreV1().Services(s.ns).Delete(s.ctx, "routed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		s.eventually("BIRD forgets "+v4, 15*time.Second, func() (bool, string) {
			return len(birdNextHops(t, v4)) == 0, birdRoute(t, v4)
		})
	})
}

// frrRoute reads FRR's best paths for prefix: the next hops of its multipath set and the
// local preference.
func frrRoute(t testing.TB, prefix string) (hops []string, localPref int, raw string) {
	out, err := env.lab.Routers[1].Show(t.Context(), "show bgp ipv4 unicast "+prefix+" json")
	if err != nil {
		return nil, 0, out
	}
	var r struct {
		Paths []struct {
			Multipath bool `json:"multipath"`
			Bestpath  *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			LocPrf   int `json:"locPrf"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, 0, out
	}
	for _, p := range r.Paths {
		if p.Multipath || (p.Bestpath != nil && p.Bestpath.Overall) {
			for _, nh := range p.Nexthops {
				hops = append(hops, nh.IP)
			}
			localPref = p.LocPrf
		}
	}
	slices.Sort(hops)
	return hops, localPref, out
}

// TestBGPLocalPolicyAndAggregation: with externalTrafficPolicy Local only nodes with a ready
// endpoint are next hops, and they follow readiness; an aggregation length announces the
// aggregate.
func TestBGPLocalPolicyAndAggregation(t *testing.T) {
	s := newScenario(t)
	pool := s.bgpSetup([]string{"203.0.113.32/28"}, nil)
	pods := s.pods("local-bgp", env.lab.Nodes[0], env.lab.Nodes[1])
	if err := env.lab.SetPodReady(s.ctx, pods[1], false); err != nil {
		t.Fatal(err)
	}
	s.service("local-bgp", "local-bgp", pool, func(svc *corev1.Service) {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	v4 := s.ingress("local-bgp")[0] + "/32"
	s.eventually("only node1 is a next hop", 30*time.Second, func() (bool, string) {
		return slices.Equal(birdNextHops(t, v4), []string{env.lab.Nodes[0].LAN4.String()}), birdRoute(t, v4)
	})
	if err := env.lab.SetPodReady(s.ctx, pods[1], true); err != nil {
		t.Fatal(err)
	}
	if err := env.lab.SetPodReady(s.ctx, pods[0], false); err != nil {
		t.Fatal(err)
	}
	s.eventually("only node2 is a next hop", 30*time.Second, func() (bool, string) {
		return slices.Equal(birdNextHops(t, v4), []string{env.lab.Nodes[1].LAN4.String()}), birdRoute(t, v4)
	})

	t.Run("aggregation", func(t *testing.T) {
		s := newScenario(t)
		pool := s.bgpSetup([]string{"203.0.113.64/28"}, func(ad *v1alpha1.BGPAdvertisementSpec) { ad.AggregationLength = ptr(int32(28)) })
		s.pods("agg", env.lab.Nodes...)
		s.service("agg", "agg", pool, nil)
		s.ingress("agg")
		s.eventually("the /28 aggregate at BIRD", 30*time.Second, func() (bool, string) {
			return slices.Equal(birdNextHops(t, "203.0.113.64/28"), nodeLAN(4)), birdRoute(t, "203.0.113.64/28")
		})
	})
}

// TestBGPPasswordAndBadConfig: a password is passed to the session; on this kernel without
// TCP-MD5 the kernel's refusal shows as the session's error. A wrong peer ASN and a missing
// Secret show up too, while the other sessions stay up.
func TestBGPPasswordAndBadConfig(t *testing.T) {
	s := newScenario(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "bgp-pass"}, StringData: map[string]string{"password": "s3cret"}}
	if _, err := env.lab.Client.CoreV1().Secrets(s.ns).Create(s.ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	peers := map[string]v1alpha1.BGPPeerSpec{
		"good":     {PeerAddress: lab.RouterLAN4.String(), PeerASN: lab.RouterASN, MyASN: lab.NodeASN},
		"password": {PeerAddress: lab.FRRLAN4.String(), PeerASN: lab.NodeASN, MyASN: lab.NodeASN, PasswordSecretRef: &v1alpha1.SecretKeyReference{Namespace: s.ns, Name: "bgp-pass"}},
		"wrongasn": {PeerAddress: lab.RouterLAN6.String(), PeerASN: 64499, MyASN: lab.NodeASN},
		"nosecret": {PeerAddress: "198.51.100.9", PeerASN: lab.RouterASN, MyASN: lab.NodeASN, PasswordSecretRef: &v1alpha1.SecretKeyReference{Namespace: s.ns, Name: "missing"}},
	}
	for name, spec := range peers {
		s.apply("bgppeers", &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: s.ns + "-" + name}, Spec: spec})
	}
	md5 := kernelHasTCPMD5()
	t.Logf("this kernel supports TCP-MD5: %v", md5)
	want := map[string]func(v1alpha1.BGPSessionState) bool{
		"good": func(st v1alpha1.BGPSessionState) bool { return st.State == "Established" },
		"wrongasn": func(st v1alpha1.BGPSessionState) bool {
			return st.State != "Established" && strings.Contains(st.LastError, "NOTIFICATION")
		},
		"nosecret": func(st v1alpha1.BGPSessionState) bool {
			return st.State == "Idle" && strings.Contains(st.LastError, "missing")
		},
		"password": func(st v1alpha1.BGPSessionState) bool {
			if md5 {
				return st.State != "Established" // FRR has no password configured: a mismatch
			}
			return st.State != "Established" && strings.Contains(st.LastError, "protocol not available")
		},
	}
	node := env.lab.Nodes[0].Name
	for name, ok := range want {
		s.eventually("session "+name+" on "+node, 40*time.Second, func() (bool, string) {
			var list v1alpha1.BGPSessionStateList
			err := s.crd.Get().Resource("bgpsessionstates").Param("fieldSelector", "nodeName="+node+",peerName="+s.ns+"-"+name).Do(s.ctx).Into(&list)
			if err != nil {
				return false, err.Error()
			}
			if len(list.Items) != 1 {
				return false, fmt.Sprintf("%d BGPSessionStates", len(list.Items))
			}
			st := list.Items[0]
			return ok(st), fmt.Sprintf("%s %q", st.State, st.LastError)
		})
	}
}

// kernelHasTCPMD5 reports whether setsockopt(TCP_MD5SIG) works on this kernel.
func kernelHasTCPMD5() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	sig := unix.TCPMD5Sig{Keylen: 4}
	sig.Addr.Family = unix.AF_INET
	copy(sig.Key[:], "test")
	return unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig) == nil
}
