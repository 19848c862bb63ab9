package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/e2e/lab"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestL2AddressConflict: a host on the LAN (the lab's client) already uses an address of the
// pool, and a Service is given that address. The owner's speaker probes it before announcing,
// finds the host, and reports the conflict: a Warning event on the Service, conflictedIPs and an
// AddressConflict condition on its ServiceAnnouncement, ironlb_speaker_l2_address_conflicts 1.
// No node answers ARP for the address: only the host does. When the host lets the address go,
// the speaker's next probe round finds nobody and the Service is announced.
func TestL2AddressConflict(t *testing.T) {
	s := newScenario(t)
	const ip = "198.51.100.251" // on the LAN, outside the lab's pool: only this test uses it
	name := s.ns + "-l2"
	s.apply("ippools", &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{ip + "/32"}, AutoAssign: ptr(false)}})
	s.apply("l2advertisements", &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{name}}})

	// The client uses the address (as a host with a static address would): its kernel
	// answers ARP for it.
	if _, err := lab.Exec(s.ctx, lab.NSLANClient, "ip", "addr", "add", ip+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			_, _ = lab.Exec(context.Background(), lab.NSLANClient, "ip", "addr", "del", ip+"/24", "dev", "eth0")
			released = true
		}
	}
	t.Cleanup(release)
	clientMAC := macOf(t, lab.NSLANClient, "eth0")

	s.pods("clash", env.lab.Nodes...)
	s.service("clash", "clash", name, func(svc *corev1.Service) { svc.Annotations[v1alpha1.AnnotationIPs] = ip })
	if got := s.ingress("clash"); !slices.Equal(got, []string{ip}) {
		t.Fatalf("ingress %v, want %s", got, ip)
	}

	// The owner reports the conflict.
	var owner *lab.Node
	s.eventually("a ServiceAnnouncement with the conflict", 20*time.Second, func() (bool, string) {
		a := s.announcement("clash")
		if a == nil {
			return false, "none"
		}
		c := meta.FindStatusCondition(a.Conditions, v1alpha1.AnnouncementConditionAddressConflict)
		if !slices.Equal(a.ConflictedIPs, []string{ip}) || c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, clientMAC) {
			return false, fmt.Sprintf("%+v", a)
		}
		owner = env.lab.Node(a.NodeName)
		return true, ""
	})
	s.eventually("a Warning event AddressConflict on the Service", 20*time.Second, func() (bool, string) {
		return s.hasEvent("clash", corev1.EventTypeWarning, "AddressConflict", clientMAC), ""
	})
	s.eventually("ironlb_speaker_l2_address_conflicts 1 on "+owner.Name, 20*time.Second, func() (bool, string) {
		v := speakerMetric(s.ctx, owner, "ironlb_speaker_l2_address_conflicts")
		return v == "1", v
	})
	// Only the host answers: no node fights for the address.
	macs, err := arpingFrom(s.ctx, lab.NSRouter, ip, 5)
	if err != nil || len(macs) == 0 {
		t.Fatalf("arping %s from the router: %v (%v), want the client's replies", ip, macs, err)
	}
	for _, m := range macs {
		if m != clientMAC {
			t.Fatalf("arping %s from the router: reply from %s, want only the client's %s (all: %v)", ip, m, clientMAC, macs)
		}
	}

	// The host lets the address go: within a probe round (backoff at most 16 s) the owner
	// announces it.
	release()
	start := time.Now()
	s.eventually("the owner answering ARP for "+ip, 40*time.Second, func() (bool, string) {
		macs, _ := arpingFrom(s.ctx, lab.NSRouter, ip, 1)
		return len(macs) == 1 && macs[0] == owner.MAC.String(), fmt.Sprint(macs)
	})
	t.Logf("%s announced by %s %v after the client released it", ip, owner.Name, time.Since(start).Round(100*time.Millisecond))
	s.eventually("the conflict cleared on the ServiceAnnouncement, the event and the gauge", 20*time.Second, func() (bool, string) {
		a := s.announcement("clash")
		v := speakerMetric(s.ctx, owner, "ironlb_speaker_l2_address_conflicts")
		ok := a != nil && len(a.ConflictedIPs) == 0 && len(a.Conditions) == 0 && v == "0" &&
			s.hasEvent("clash", corev1.EventTypeNormal, "AddressConflictResolved", ip)
		return ok, fmt.Sprintf("%+v %s", a, v)
	})
	if _, err := lab.HTTPGet(s.ctx, lab.NSLANClient, "http://"+ip+"/", 2*time.Second); err != nil {
		t.Errorf("GET through %s from the client: %v", ip, err)
	}
}

// announcement returns the Service's L2 ServiceAnnouncement, if exactly one exists.
func (s *scenario) announcement(svc string) *v1alpha1.ServiceAnnouncement {
	var list v1alpha1.ServiceAnnouncementList
	if err := s.crd.Get().Namespace(s.ns).Resource("serviceannouncements").Do(s.ctx).Into(&list); err != nil {
		return nil
	}
	var out []*v1alpha1.ServiceAnnouncement
	for i := range list.Items {
		if a := &list.Items[i]; a.ServiceName == svc && a.Mode == v1alpha1.AnnouncementL2 {
			out = append(out, a)
		}
	}
	if len(out) != 1 {
		return nil
	}
	return out[0]
}

// hasEvent reports whether the Service has an event of the type and reason whose message
// contains word.
func (s *scenario) hasEvent(svc, typ, reason, word string) bool {
	list, err := env.lab.Client.CoreV1().Events(s.ns).List(s.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + svc})
	if err != nil {
		return false
	}
	return slices.ContainsFunc(list.Items, func(e corev1.Event) bool {
		return e.Type == typ && e.Reason == reason && strings.Contains(e.Message, word)
	})
}

// speakerMetric returns the value of an unlabelled metric of the speaker on node n ("" if
// absent), from its metrics port (the chart's speaker.metricsPort) in the node's network namespace.
func speakerMetric(ctx context.Context, n *lab.Node, name string) string {
	body, err := lab.HTTPGet(ctx, n.NetNS, "http://127.0.0.1:7473/metrics", 2*time.Second)
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// arpingFrom sends count ARP requests for ip from namespace ns's eth0 and returns the MAC of
// each reply.
func arpingFrom(ctx context.Context, ns, ip string, count int) ([]string, error) {
	out, err := lab.Exec(ctx, ns, "arping", "-c", fmt.Sprint(count), "-W", "0.2", "-w", fmt.Sprint(count/5+2), "-i", "eth0", ip)
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, m[1])
	}
	if len(macs) == 0 && err != nil {
		return nil, err
	}
	return macs, nil
}

// macOf returns an interface's MAC in namespace ns.
func macOf(t *testing.T, ns, ifname string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), ns, "cat", "/sys/class/net/"+ifname+"/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
