package plugin

import (
	"strings"
	"testing"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStatus(t *testing.T) {
	st := baseState()
	other := "other.io/lb"
	st.Services = []corev1.Service{
		svc("shop", "web", 1, dualStack, withIPs("198.51.100.10", "2001:db8::10")),
		svc("shop", "wait", 2),
		svc("shop", "theirs", 3, func(s *corev1.Service) { s.Spec.LoadBalancerClass = &other }),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "plain"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}},
		svc("else", "x", 4),
	}
	st.Announcements = []v1alpha1.ServiceAnnouncement{announced("shop", "web", "n2", v1alpha1.AnnouncementL2, "198.51.100.10", "2001:db8::10")}
	st.Events = []corev1.Event{
		{InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}, Type: "Normal", Reason: "IPAllocated", Message: "Assigned 198.51.100.10 from pool web", LastTimestamp: at(10)},
		{InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}, Type: "Normal", Reason: "Announcing", Message: "n2 answers", LastTimestamp: at(20)},
	}
	list := Status(st, "shop", "")
	if len(list) != 3 {
		t.Fatalf("got %d Services, want web, wait, theirs: %+v", len(list), list)
	}
	var b strings.Builder
	if err := WriteStatusTable(&b, list, at(80).Time); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	for _, want := range []string{
		"shop       theirs  -", "not ironlb's (class other.io/lb)",
		"shop       wait    <pending>",
		"198.51.100.10,2001:db8::10", "n2(eth0)", "Allocated", "Normal Announcing (60s ago)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	one := Status(st, "shop", "web")
	b.Reset()
	if err := WriteStatusDetail(&b, one[0], at(80).Time); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	for _, want := range []string{"Requested:    RequireDualStack", "198.51.100.10  pool web", "2001:db8::10   pool web", "n2  L2  198.51.100.10,2001:db8::10  interfaces eth0",
		"60s ago  Normal  Announcing", "70s ago  Normal  IPAllocated"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("detail lacks %q", want)
		}
	}
}

func TestPools(t *testing.T) {
	st := baseState()
	st.Pools = append(st.Pools, pool("late", 9, "198.51.100.11/32"), pool("spare", 3, "203.0.113.0/30"))
	st.Services = []corev1.Service{
		svc("shop", "a", 1, withIPs("198.51.100.10"), withAnnotation("ironlb.io/sharing-key", "k")),
		svc("shop", "b", 2, withIPs("198.51.100.10"), withAnnotation("ironlb.io/sharing-key", "k"), withPort(443)),
		svc("shop", "c", 3, dualStack, withIPs("198.51.100.11", "2001:db8::10")),
		svc("shop", "old", 4, withIPs("192.0.2.50")),
	}
	st.Nodes[1].Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "203.0.113.1"}}
	got := Pools(st)
	var b strings.Builder
	if err := WritePools(&b, got); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	for _, want := range []string{
		"late       IPv4    1      0         0          true         Overlap: not used for allocation: overlaps the older pool web",
		"spare      IPv4    4      0         3          true         Ready",
		"web        IPv4    2      2         0          true         Ready",
		"web        IPv6    2      1         1          true         Ready",
		"web        198.51.100.10  shop/a, shop/b",
		"web        198.51.100.11  shop/c",
		"web        2001:db8::10   shop/c",
		"(no pool)  -       -      -         -          -            Outside",
		"(no pool)  192.0.2.50     shop/old",
		"spare      203.0.113.1    reserved: the InternalIP of node n2",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("pools lacks %q", want)
		}
	}
}
