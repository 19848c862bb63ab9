package speaker

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

// TestAnnouncingEvents: in L2 the node that takes an IP records an event; in BGP no node does
// for its own paths (that would be Services x nodes events), only the node reporting the
// Service, when the nodes announcing it change.
func TestAnnouncingEvents(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	if err := factory.Core().V1().Services().Informer().GetIndexer().Add(svc); err != nil {
		t.Fatal(err)
	}
	ip := []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	ann := func(nodes ...string) *Announced {
		return &Announced{Namespace: "shop", Name: "web", IPs: ip, Peers: []string{"tor"}, Interfaces: []string{"eth0"}, Nodes: nodes}
	}
	events := func(prev Plan, cur Target) []string {
		rec := record.NewFakeRecorder(10)
		s := &Speaker{factory: factory, recorder: rec, log: slog.New(slog.DiscardHandler)}
		s.cfg.NodeName = "n1"
		s.reportAnnouncements(prev, cur)
		close(rec.Events)
		var out []string
		for e := range rec.Events {
			out = append(out, e)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		prev, cur Target
		want      []string
	}{{
		name: "L2: this node takes the IP",
		prev: &L2Target{}, cur: &L2Target{Services: map[string]*Announced{"shop/web": ann()}},
		want: []string{"Normal Announcing node n1 announces 203.0.113.10 on [eth0] (L2)"},
	}, {
		name: "BGP: this node announces, another reports",
		prev: &BGPTarget{}, cur: &BGPTarget{Services: map[string]*Announced{"shop/web": ann()}},
	}, {
		name: "BGP: this node reports",
		prev: &BGPTarget{},
		cur:  &BGPTarget{Services: map[string]*Announced{"shop/web": ann()}, Reports: map[string]*Announced{"shop/web": ann("n1", "n2")}},
		want: []string{"Normal Announcing nodes [n1 n2] announce 203.0.113.10 to peers [tor] (BGP)"},
	}, {
		name: "BGP: the report is the same",
		prev: &BGPTarget{Services: map[string]*Announced{"shop/web": ann()}, Reports: map[string]*Announced{"shop/web": ann("n1", "n2")}},
		cur:  &BGPTarget{Services: map[string]*Announced{"shop/web": ann()}, Reports: map[string]*Announced{"shop/web": ann("n1", "n2")}},
	}, {
		name: "BGP: a node joins",
		prev: &BGPTarget{Services: map[string]*Announced{"shop/web": ann()}, Reports: map[string]*Announced{"shop/web": ann("n1")}},
		cur:  &BGPTarget{Services: map[string]*Announced{"shop/web": ann()}, Reports: map[string]*Announced{"shop/web": ann("n1", "n2")}},
		want: []string{"Normal Announcing nodes [n1 n2] announce 203.0.113.10 to peers [tor] (BGP)"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := events(Plan{Targets: []Target{tc.prev}}, tc.cur)
			if !slices.Equal(got, tc.want) {
				t.Errorf("events:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.want, "\n     "))
			}
		})
	}
}
