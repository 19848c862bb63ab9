package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"golang.org/x/sys/unix"
)

// tcpMD5Support reports whether the kernel accepts a TCP MD5 signature key on a socket,
// and the error if it does not.
func tcpMD5Support() (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return false, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	sig := unix.TCPMD5Sig{Keylen: 6}
	sig.Addr.Family = unix.AF_INET
	copy(sig.Addr.Data[2:], []byte{198, 51, 100, 1})
	copy(sig.Key[:], "s3cret")
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
		return false, fmt.Errorf("setsockopt TCP_MD5SIG: %w", err)
	}
	return true, nil
}

// Router and node addresses on link 1 for the sessions with a password.
var (
	routerMD5 = netip.MustParseAddr("198.51.100.21")
	nodeMD5   = netip.MustParseAddr("198.51.100.24")
	routerBad = netip.MustParseAddr("198.51.100.22") // expects another password
	nodeBad   = netip.MustParseAddr("198.51.100.25")
)

// TestPassword: the password reaches GoBGP's neighbor configuration, then two cases:
//   - kernel: whatever this kernel does. Where it supports TCP MD5, a session with the
//     router's password comes up and one with another password stays down; where it does not
//     (DESIGN.md section 7 expected that here), the kernel's refusal is the session's
//     LastError and the session without password keeps working.
//   - refused: a kernel without TCP MD5, emulated with a seccomp filter that fails
//     setsockopt(TCP_MD5SIG) with ENOPROTOOPT as such a kernel does, so that the refusal is
//     checked on every machine. Skipped where the kernel case already was that.
func TestPassword(t *testing.T) {
	t.Run("kernel", func(t *testing.T) {
		if info := inChild(t); info != nil {
			supported, why := tcpMD5Support()
			if supported {
				t.Log("TCP-MD5: this kernel supports TCP MD5 signatures; checking that the right password brings the session up and a wrong one does not")
			} else {
				t.Logf("TCP-MD5: this kernel has no TCP MD5 support (%v); checking that its refusal is the session's LastError and the other sessions keep working", why)
			}
			passwordChild(t, info, supported, why)
			return
		}
		passwordLab(t).runChild()
	})
	t.Run("refused", func(t *testing.T) {
		if info := inChild(t); info != nil {
			if err := refuseTCPMD5(); err != nil {
				t.Fatalf("emulating a kernel without TCP MD5: %v", err)
			}
			supported, why := tcpMD5Support()
			if supported {
				t.Fatal("the seccomp filter did not make TCP_MD5SIG fail")
			}
			t.Logf("TCP-MD5: emulating a kernel without TCP MD5 (seccomp: %v); checking that the refusal is the session's LastError and the other sessions keep working", why)
			passwordChild(t, info, false, why)
			return
		}
		if ok, _ := tcpMD5Support(); !ok {
			t.Skip("this kernel lacks TCP MD5 itself: the kernel case checked the refusal")
		}
		passwordLab(t).runChild()
	})
}

// passwordLab has BIRD sessions with a password (routerMD5, nodeMD5), with another password
// (routerBad, nodeBad) and without (the link's first addresses).
func passwordLab(t *testing.T) *lab {
	l := newLab(t, 1)
	for _, a := range []netip.Addr{routerMD5, routerBad} {
		l.addAddress(true, 1, a)
	}
	for _, a := range []netip.Addr{nodeMD5, nodeBad} {
		l.addAddress(false, 1, a)
	}
	l.startBIRD(birdEBGP(l.info.Links[0], fmt.Sprintf(`
protocol bgp withpw from node { local %s as %d; neighbor %s as %d; password "s3cret"; }
protocol bgp otherpw from node { local %s as %d; neighbor %s as %d; password "other"; }
`, routerMD5, routerASN, nodeMD5, nodeASN, routerBad, routerASN, nodeBad, nodeASN)))
	return l
}

func passwordChild(t *testing.T, info *labInfo, supported bool, why error) {
	li := info.Links[0]
	s := startSpeaker(t, testConfig(t, li))
	must(t, s.SetPeers([]Peer{
		{Name: "md5", Address: routerMD5, SourceAddress: nodeMD5, PeerASN: routerASN, Password: "s3cret"},
		{Name: "md5-wrong", Address: routerBad, SourceAddress: nodeBad, PeerASN: routerASN, Password: "s3cret"},
		{Name: "plain", Address: li.Router4, PeerASN: routerASN},
	}))
	must(t, s.SetPaths([]Path{{Prefix: netip.MustParsePrefix("203.0.113.10/32")}}))

	// The password reached GoBGP's neighbor configuration.
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	got := map[string]string{}
	must(t, srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		got[p.GetConf().GetNeighborAddress()] = p.GetConf().GetAuthPassword()
	}))
	if got[routerMD5.String()] != "s3cret" || got[li.Router4.String()] != "" {
		t.Errorf("GoBGP's passwords by neighbor: %q, want s3cret for %s and none for %s", got, routerMD5, li.Router4)
	}

	s.waitState(t, "plain", StateEstablished, 15*time.Second)
	if supported {
		st := s.waitState(t, "md5", StateEstablished, 15*time.Second)
		t.Logf("md5: %s, %d prefixes sent", st.State, st.PrefixesSent)
		// The router drops segments with a wrong signature: the connection times out.
		waitFor(t, 15*time.Second, func() (bool, string) {
			st = s.session(t, "md5-wrong")
			return st.LastError != "", fmt.Sprintf("md5-wrong: %+v", st)
		})
		t.Logf("md5-wrong: %s, %q", st.State, st.LastError)
		if st.State == StateEstablished || !strings.Contains(st.LastError, "i/o timeout (with a TCP MD5 password") {
			t.Errorf("the session with the wrong password: %+v, want down with a connection timeout", st)
		}
		return
	}
	var st SessionState
	waitFor(t, 10*time.Second, func() (bool, string) {
		st = s.session(t, "md5")
		return strings.Contains(st.LastError, "protocol not available"), fmt.Sprintf("md5 session: %+v", st)
	})
	t.Logf("md5: %s, %q", st.State, st.LastError)
	if !strings.Contains(st.LastError, "TCP MD5") || st.State == StateEstablished {
		t.Errorf("md5 session: %+v, want down with the kernel's refusal of TCP MD5", st)
	}
	if !errors.Is(why, syscall.ENOPROTOOPT) {
		t.Errorf("TCP MD5 was refused with %v, not ENOPROTOOPT (protocol not available)", why)
	}
	if p := s.session(t, "plain"); p.State != StateEstablished || p.PrefixesSent != 1 {
		t.Errorf("the session without password: %+v, want Established with 1 prefix sent", p)
	}
}
