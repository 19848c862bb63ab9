package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPoolsOf(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	at := func(ts metav1.Time) func(*v1alpha1.IPPool) {
		return func(p *v1alpha1.IPPool) { p.CreationTimestamp = ts }
	}
	older := ippool("young-name", []string{"198.51.100.0/24"}, at(t0))
	younger := ippool("a-name", []string{"198.51.100.0/25"}, at(metav1.NewTime(t0.Add(time.Hour))))
	shrunk := ippool("shrunk", []string{"203.0.113.0/28"}, func(p *v1alpha1.IPPool) {
		p.CreationTimestamp = t0
		p.Status.RetainedAddresses = []string{"203.0.113.200", "junk"}
	})
	broken := ippool("broken", []string{"nonsense"}, nil)
	pools := CompilePools([]*v1alpha1.IPPool{younger, broken, shrunk, older})
	tests := []struct {
		ip   string
		want string // "" for none
	}{
		{"198.51.100.1", "young-name"}, // both contain it: the older pool keeps it, whatever the names
		{"198.51.100.200", "young-name"},
		{"203.0.113.200", "shrunk"}, // retained outside its ranges
		{"203.0.113.1", "shrunk"},
		{"192.0.2.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			got := ""
			if p := pools.Of(netip.MustParseAddr(tt.ip)); p != nil {
				got = p.Name
			}
			if got != tt.want {
				t.Errorf("pool of %s = %q, want %q", tt.ip, got, tt.want)
			}
		})
	}
	if len(pools) != 3 {
		t.Errorf("%d pools compiled, want 3 (the one whose addresses do not parse left out)", len(pools))
	}
}

func TestCompileAds(t *testing.T) {
	badSel := []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Near"}}}}
	l2, bad := CompileL2Ads([]*v1alpha1.L2Advertisement{
		{ObjectMeta: metav1.ObjectMeta{Name: "ok"}, Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{"p"}, Interfaces: []string{"eth0"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bad-nodes"}, Spec: v1alpha1.L2AdvertisementSpec{NodeSelectors: badSel}},
	})
	if len(l2) != 1 || l2[0].Name != "ok" || !cmp.Equal(l2[0].Interfaces, []string{"eth0"}) {
		t.Errorf("L2 ads = %+v, want only ok on eth0", l2)
	}
	if len(bad) != 1 || bad[0].Kind != "L2Advertisement" || bad[0].Name != "bad-nodes" || !strings.HasPrefix(bad[0].Err.Error(), "spec.nodeSelectors: selector 0: ") {
		t.Errorf("invalid = %+v, want bad-nodes with spec.nodeSelectors named", bad)
	}

	bgp, bad := CompileBGPAds([]*v1alpha1.BGPAdvertisement{
		{ObjectMeta: metav1.ObjectMeta{Name: "agg"}, Spec: v1alpha1.BGPAdvertisementSpec{
			Communities: []string{"64500:1", "large:64500:1:2"}, AggregationLength: ptr(int32(24)), AggregationLengthV6: ptr(int32(200)),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bad-pools"}, Spec: v1alpha1.BGPAdvertisementSpec{IPPoolSelectors: badSel}},
	})
	if len(bad) != 1 || bad[0].Name != "bad-pools" || !strings.HasPrefix(bad[0].Err.Error(), "spec.ipPoolSelectors: ") {
		t.Errorf("invalid = %+v, want bad-pools with spec.ipPoolSelectors named", bad)
	}
	if len(bgp) != 1 {
		t.Fatalf("BGP ads = %+v, want agg only", bgp)
	}
	ad := bgp[0]
	if !cmp.Equal(ad.Communities, []string{"64500:1"}) || !cmp.Equal(ad.LargeCommunities, []string{"64500:1:2"}) {
		t.Errorf("communities %v, large %v: want the large one split off without its prefix", ad.Communities, ad.LargeCommunities)
	}
	for ip, want := range map[string]string{
		"198.51.100.7": "198.51.100.0/24",
		"2001:db8::7":  "2001:db8::7/128", // a length beyond the family's bits announces the address
	} {
		if got := ad.Prefix(netip.MustParseAddr(ip)).String(); got != want {
			t.Errorf("prefix of %s = %s, want %s", ip, got, want)
		}
	}
}

func TestSelection(t *testing.T) {
	pool := &Pool{Name: "p", Labels: map[string]string{"tier": "gold"}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"zone": "a"}}}
	sel := func(names []string, poolSel, nodeSel string) Selection {
		s := Selection{PoolNames: names}
		if poolSel != "" {
			s.PoolSelectors = append(s.PoolSelectors, mustSelector(poolSel))
		}
		if nodeSel != "" {
			s.NodeSelectors = append(s.NodeSelectors, mustSelector(nodeSel))
		}
		return s
	}
	tests := []struct {
		name       string
		sel        Selection
		pool, node bool
	}{
		{"nothing set selects every pool and node", sel(nil, "", ""), true, true},
		{"by pool name", sel([]string{"q", "p"}, "", ""), true, true},
		{"another pool's name", sel([]string{"q"}, "", ""), false, true},
		{"a name or a label: the label matches", sel([]string{"q"}, "tier=gold", ""), true, true},
		{"a node selector that does not match", sel(nil, "", "zone=b"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sel.SelectsPool(pool); got != tt.pool {
				t.Errorf("SelectsPool = %v, want %v", got, tt.pool)
			}
			if got := tt.sel.SelectsNode(node); got != tt.node {
				t.Errorf("SelectsNode = %v, want %v", got, tt.node)
			}
		})
	}
	excluded := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelExcludeFromLB: ""}}}
	if !Excluded(excluded) || Excluded(node) {
		t.Error("Excluded must follow the label's presence, whatever its value")
	}
}
