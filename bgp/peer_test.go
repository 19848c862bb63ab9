package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizePeer(t *testing.T) {
	router := netip.MustParseAddr("198.51.100.1")
	for _, tc := range []struct {
		name    string
		peer    Peer
		want    Peer
		wantErr string
	}{{
		name: "defaults",
		peer: Peer{Name: "r", Address: router, PeerASN: 65001},
		want: Peer{Name: "r", Address: router, PeerASN: 65001, LocalASN: 65000, Port: 179, HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second},
	}, {
		name: "timers round up to whole seconds",
		peer: Peer{Name: "r", Address: router, PeerASN: 65001, HoldTime: 3500 * time.Millisecond, KeepaliveTime: 1100 * time.Millisecond},
		want: Peer{Name: "r", Address: router, PeerASN: 65001, LocalASN: 65000, Port: 179, HoldTime: 4 * time.Second, KeepaliveTime: 2 * time.Second},
	}, {
		name: "graceful restart gets a restart time; without it the time is dropped",
		peer: Peer{Name: "r", Address: netip.MustParseAddr("::ffff:198.51.100.1"), PeerASN: 65001, GracefulRestart: true},
		want: Peer{Name: "r", Address: router, PeerASN: 65001, LocalASN: 65000, Port: 179, HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second,
			GracefulRestart: true, RestartTime: 120 * time.Second},
	}, {
		name: "restart time without graceful restart is ignored",
		peer: Peer{Name: "r", Address: router, PeerASN: 65001, RestartTime: time.Minute},
		want: Peer{Name: "r", Address: router, PeerASN: 65001, LocalASN: 65000, Port: 179, HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second},
	}, {
		name: "everything set",
		peer: Peer{Name: "r", Address: netip.MustParseAddr("2001:db8::1"), Port: 1179, PeerASN: 4200000000, LocalASN: 4200000001,
			SourceAddress: netip.MustParseAddr("2001:db8::2"), HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, EBGPMultiHop: 2,
			Password: "s3cret", GracefulRestart: true, RestartTime: 30 * time.Second},
		want: Peer{Name: "r", Address: netip.MustParseAddr("2001:db8::1"), Port: 1179, PeerASN: 4200000000, LocalASN: 4200000001,
			SourceAddress: netip.MustParseAddr("2001:db8::2"), HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, EBGPMultiHop: 2,
			Password: "s3cret", GracefulRestart: true, RestartTime: 30 * time.Second},
	}, {
		name:    "no name, address or ASN",
		peer:    Peer{},
		wantErr: "invalid peer: name is empty; address is not set; peer ASN is not set",
	}, {
		name:    "zone",
		peer:    Peer{Name: "r", Address: netip.MustParseAddr("fe80::1%eth0"), PeerASN: 1},
		wantErr: "address fe80::1%eth0 has a zone, which is not supported",
	}, {
		name:    "multicast",
		peer:    Peer{Name: "r", Address: netip.MustParseAddr("224.0.0.5"), PeerASN: 1},
		wantErr: "address 224.0.0.5 is not a unicast address",
	}, {
		name:    "source in another family",
		peer:    Peer{Name: "r", Address: router, SourceAddress: netip.MustParseAddr("2001:db8::2"), PeerASN: 1},
		wantErr: "source address 2001:db8::2 is not in the family of the peer address 198.51.100.1",
	}, {
		name:    "hold time too short",
		peer:    Peer{Name: "r", Address: router, PeerASN: 1, HoldTime: 2 * time.Second},
		wantErr: "hold time 2s is outside 3s-65535s",
	}, {
		name:    "keepalive not below hold time",
		peer:    Peer{Name: "r", Address: router, PeerASN: 1, HoldTime: 9 * time.Second, KeepaliveTime: 9 * time.Second},
		wantErr: "keepalive time 9s must be at least 1s and less than the hold time 9s",
	}, {
		name:    "multihop on iBGP",
		peer:    Peer{Name: "r", Address: router, PeerASN: 65000, EBGPMultiHop: 2},
		wantErr: "eBGP multihop is set on an iBGP session",
	}, {
		name:    "password too long",
		peer:    Peer{Name: "r", Address: router, PeerASN: 1, Password: strings.Repeat("x", 81)},
		wantErr: "password is 81 bytes long, the kernel accepts at most 80",
	}, {
		name:    "restart time too long",
		peer:    Peer{Name: "r", Address: router, PeerASN: 1, GracefulRestart: true, RestartTime: 4096 * time.Second},
		wantErr: "restart time 4096s is above 4095s",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.peer.normalize(65000)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("normalize: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("normalize (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompilePeers(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.1")
	b := netip.MustParseAddr("198.51.100.2")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	peers := []Peer{
		{Name: "c-same-address", Address: a, PeerASN: 65001},
		{Name: "a", Address: a, PeerASN: 65001},
		{Name: "b", Address: b, PeerASN: 65001, ConfigError: "secret not found"},
		{Name: "a", Address: b, PeerASN: 65002}, // duplicate name
		{Name: "d-invalid", Address: b},
	}
	first, errs := compilePeers(peers, 65000, nil, t0)
	if len(errs) != 1 || errs[0].Error() != `peer "a" is given more than once; using the first` {
		t.Errorf("errors: %v, want the duplicate name", errs)
	}
	type summary struct {
		Name, Err string
		At        time.Time
	}
	sum := func(ds []desiredPeer) []summary {
		var out []summary
		for _, d := range ds {
			out = append(out, summary{d.peer.Name, d.err, d.errAt})
		}
		return out
	}
	want := []summary{
		{Name: "a"},
		{Name: "b", Err: "secret not found", At: t0},
		{Name: "c-same-address", Err: "address 198.51.100.1 is also the address of peer a, which is configured instead (GoBGP keeps one session per address)", At: t0},
		{Name: "d-invalid", Err: "invalid peer: peer ASN is not set", At: t0},
	}
	if diff := cmp.Diff(want, sum(first)); diff != "" {
		t.Errorf("first call (-want +got):\n%s", diff)
	}

	// A second call keeps the time of an unchanged error and dates a new one.
	peers[2].ConfigError = "secret has no key password"
	second, _ := compilePeers(peers, 65000, first, t1)
	want[1] = summary{Name: "b", Err: "secret has no key password", At: t1}
	if diff := cmp.Diff(want, sum(second)); diff != "" {
		t.Errorf("second call (-want +got):\n%s", diff)
	}
}
