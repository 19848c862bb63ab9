package speaker

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/l2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func hw(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestMetaCarriesReachAndMACs(t *testing.T) {
	r := Reach{reachKeyOf("lan", netip.MustParseAddr("198.51.100.1")): ReachNone}
	macs := []net.HardwareAddr{hw("02:00:00:00:00:01"), hw("02:00:00:00:00:02")}
	meta, all := EncodeMeta(r, macs)
	if !all || len(meta) > l2.MaxMetaSize {
		t.Fatalf("EncodeMeta: %d bytes, all %v", len(meta), all)
	}
	gotR, gotM := DecodeMeta(meta)
	if diff := cmp.Diff(r, gotR); diff != "" {
		t.Errorf("reach (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(macs, gotM); diff != "" {
		t.Errorf("MACs (-want +got):\n%s", diff)
	}
	// A speaker of the previous release publishes version 1: its reach is read, no MACs.
	v1, _ := r.Encode()
	if gotR, gotM := DecodeMeta(v1); !cmp.Equal(r, gotR) || gotM != nil {
		t.Errorf("version 1: reach %v, MACs %v", gotR, gotM)
	}
	// Full: 16 MACs and as many entries as fit, the worst kept.
	many := make([]net.HardwareAddr, 20)
	for i := range many {
		many[i] = net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}
	}
	big := Reach{}
	for i := range 120 {
		big[ReachKey(i)] = ReachOffSubnet
	}
	meta, all = EncodeMeta(big, many)
	if all || len(meta) > l2.MaxMetaSize {
		t.Fatalf("EncodeMeta of 120 entries and 20 MACs: %d bytes, all %v", len(meta), all)
	}
	if _, m := DecodeMeta(meta); len(m) != maxMetaMACs {
		t.Errorf("%d MACs decoded, want %d", len(m), maxMetaMACs)
	}
	for _, garbage := range [][]byte{nil, {2}, {2, 3, 0, 0}, {3, 0}} {
		if r, m := DecodeMeta(garbage); len(r) != 0 || len(m) != 0 {
			t.Errorf("DecodeMeta(%v) = %v, %v, want nothing", garbage, r, m)
		}
	}
}

func TestNodeMACs(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("198.51.100.11/24")}
	ll := []netip.Prefix{netip.MustParsePrefix("fe80::1/64")}
	got := nodeMACs([]l2.Interface{
		{Name: "cali1", Up: true, Virtual: true, Prefixes: ll, MAC: hw("ee:ee:ee:ee:ee:ee")},
		{Name: "cali2", Up: true, Virtual: true, Prefixes: ll, MAC: hw("ee:ee:ee:ee:ee:ee")},
		{Name: "cni0", Up: true, Virtual: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.19.1.1/24")}, MAC: hw("02:00:00:00:00:0c")},
		{Name: "down", Virtual: false, MAC: hw("02:00:00:00:00:0d")},
		{Name: "eth0", Up: true, Prefixes: lan, MAC: hw("02:00:00:00:00:e0")},
		{Name: "lo", Up: true, Loopback: true, Virtual: true},
		{Name: "port", Up: true, Master: "cni0", Virtual: true, MAC: hw("02:00:00:00:00:0f")},
		{Name: "wg0", Up: true, Virtual: true, Prefixes: lan},
	})
	want := []net.HardwareAddr{hw("02:00:00:00:00:e0"), hw("02:00:00:00:00:0c"), hw("ee:ee:ee:ee:ee:ee")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodeMACs (-want +got):\n%s", diff)
	}
}

func TestWithHolds(t *testing.T) {
	since := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	l2obj := func(name string, ips ...string) *v1alpha1.ServiceAnnouncement {
		return &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: name}, Mode: v1alpha1.AnnouncementL2, IPs: ips, Interfaces: []string{"eth0"}}
	}
	bgp := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}, Mode: v1alpha1.AnnouncementBGP, IPs: []string{"198.51.100.1"}, Peers: []string{"r"}}
	held := map[netip.Addr]l2.Hold{
		netip.MustParseAddr("198.51.100.1"):  {},
		netip.MustParseAddr("198.51.100.2"):  {Conflict: true, MAC: hw("02:00:00:00:00:99"), Link: l2.Link{Interface: "eth0", Protocol: l2.ARP}, Since: since},
		netip.MustParseAddr("2001:db8::2"):   {},
		netip.MustParseAddr("198.51.100.77"): {},
	}
	got := withHolds([]*v1alpha1.ServiceAnnouncement{
		l2obj("probing", "198.51.100.1"),
		l2obj("conflicted", "198.51.100.2", "2001:db8::1"),
		l2obj("half-probing", "198.51.100.3", "2001:db8::2"),
		l2obj("clear", "198.51.100.4"),
		bgp,
	}, held)
	names := []string{}
	for _, o := range got {
		names = append(names, o.Name)
	}
	if diff := cmp.Diff([]string{"conflicted", "half-probing", "clear", "bgp"}, names); diff != "" {
		t.Fatalf("objects (-want +got):\n%s", diff)
	}
	c := got[0]
	if !cmp.Equal(c.IPs, []string{"198.51.100.2", "2001:db8::1"}) || !cmp.Equal(c.ConflictedIPs, []string{"198.51.100.2"}) || len(c.Conditions) != 1 {
		t.Fatalf("conflicted object: %+v", c)
	}
	cond := c.Conditions[0]
	if cond.Type != v1alpha1.AnnouncementConditionAddressConflict || cond.Status != metav1.ConditionTrue || cond.Reason != "AddressInUse" ||
		!cond.LastTransitionTime.Time.Equal(since) || cond.Message == "" {
		t.Errorf("condition %+v", cond)
	}
	if !cmp.Equal(got[1].IPs, []string{"198.51.100.3"}) || got[1].ConflictedIPs != nil || got[1].Conditions != nil {
		t.Errorf("half-probing object: %+v", got[1])
	}
	if !cmp.Equal(got[3].IPs, []string{"198.51.100.1"}) {
		t.Errorf("a BGP object changed: %+v", got[3])
	}
}
