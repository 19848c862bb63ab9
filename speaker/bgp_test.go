package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// An API server outage keeps the BGP sessions as they were: the password read before stays
// in use (the session is not turned into a configuration error and deleted); only a Secret
// that is really gone or changed changes the session, and a password never read is never
// replaced by none.
func TestAPIOutageKeepsBGPPasswords(t *testing.T) {
	ctx := context.Background()
	var api cuttableAPI
	r, admin, secret := passwordRunner(t, &api, nil)
	ns := secret.Namespace
	bp := passwordPeer(ns, "bgp")
	// reread reads the Secrets again, as the cache's loop does secretTTL later.
	reread := func() { r.secrets.refresh(ctx, true) }
	check := func(when, password, configError string) {
		t.Helper()
		p := r.peer(bp)
		if p.Password != password || !strings.Contains(p.ConfigError, configError) || (configError == "" && p.ConfigError != "") {
			t.Errorf("%s: password %q, config error %q; want password %q, config error with %q", when, p.Password, p.ConfigError, password, configError)
		}
	}

	check("first asked for", "", "not read yet")
	reread()
	check("API up", "first", "")
	api.setCut(true)
	reread()
	check("API cut off", "first", "")
	reread()
	check("API still cut off", "first", "")

	api.setCut(false)
	secret.Data["password"] = []byte("second")
	if _, err := admin.Kube.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	reread()
	check("Secret changed", "second", "")
	if err := admin.Kube.CoreV1().Secrets(ns).Delete(ctx, "bgp", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	reread()
	check("Secret deleted", "", "not found")
	api.setCut(true)
	reread()
	check("Secret deleted, then API cut off", "", "password Secret "+ns+"/bgp")

	// A Secret never read: no password to keep, so no session.
	bp = passwordPeer(ns, "never-read")
	check("never asked for, API cut off", "", "not read yet")
	reread()
	check("never read, API cut off", "", "password Secret "+ns+"/never-read")
}

// With the API server black-holed (connections accepted, never answered), a plan's BGP sessions
// get their passwords at once, as read before: no session waits on a Secret read, which
// runs (and times out) in the cache's own loop.
func TestBlackHoledAPIDoesNotDelayPasswords(t *testing.T) {
	ctx := context.Background()
	var api cuttableAPI
	changed := make(chan struct{}, 1)
	r, _, secret := passwordRunner(t, &api, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go r.secrets.run(runCtx)
	bp := passwordPeer(secret.Namespace, "bgp")
	r.peer(bp) // asks for it
	select {
	case <-changed: // read: a plan would run now
	case <-time.After(10 * time.Second):
		t.Fatal("the Secret was not read within 10 s")
	}
	if p := r.peer(bp); p.Password != "first" {
		t.Fatalf("password %q, config error %q; want first", p.Password, p.ConfigError)
	}

	accepted := api.blackHole(t)
	done := make(chan struct{})
	go func() { r.secrets.refresh(ctx, true); close(done) }()
	select {
	case <-accepted: // the read is stuck in the black hole
	case <-time.After(10 * time.Second):
		t.Fatal("the read never reached the black hole")
	}
	start := time.Now()
	p := r.peer(bp)
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("a session's configuration took %v with the API black-holed; want at once", took)
	}
	if p.Password != "first" || p.ConfigError != "" {
		t.Errorf("black-holed: password %q, config error %q; want first", p.Password, p.ConfigError)
	}
	select {
	case <-done:
		t.Fatal("the read returned before its timeout: the API server was not black-holed")
	default:
	}
	select {
	case <-done:
	case <-time.After(secretTimeout + 5*time.Second):
		t.Fatal("the read outlived its timeout")
	}
	if p := r.peer(bp); p.Password != "first" || p.ConfigError != "" {
		t.Errorf("after the timed-out read: password %q, config error %q; want first", p.Password, p.ConfigError)
	}
}

// passwordRunner is a bgpRunner of node "n" whose API clients dial through api, with a fresh
// namespace holding the BGP password Secret "bgp" ("first"), which admin wrote. onChange is
// the Secret cache's callback (nil for none).
func passwordRunner(t *testing.T, api *cuttableAPI, onChange func()) (r *bgpRunner, admin *kubeclient.Clients, secret *corev1.Secret) {
	t.Helper()
	admin, ns := clients(t)
	def := DefaultConfig()
	c, err := kubeclient.New(api.config(cluster(t)), def.API, def.Events)
	if err != nil {
		t.Fatal(err)
	}
	secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bgp"}, Data: map[string][]byte{"password": []byte("first")}}
	if _, err := admin.Kube.CoreV1().Secrets(ns).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := newBGPMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r = &bgpRunner{node: "n", log: slog.Default(), kube: c.Kube, crd: c.CRD, metrics: m, secrets: newSecretCache(c.Kube, slog.Default(), onChange)}
	return r, admin, secret
}

// passwordPeer is a BGPPeer whose password is in the Secret ns/secretName.
func passwordPeer(ns, secretName string) *v1alpha1.BGPPeer {
	return &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "192.0.2.1", PeerASN: 65001, MyASN: 65000,
		PasswordSecretRef: &v1alpha1.SecretKeyReference{Namespace: ns, Name: secretName},
	}}
}

// cuttableAPI dials the API server until cut: then it closes the open connections and refuses
// new ones, as an API server that went away does.
type cuttableAPI struct {
	mu    sync.Mutex
	cut   bool
	hole  string // black hole: dial this listener instead
	conns []net.Conn
}

// config returns cfg dialing through the cuttable connection.
func (c *cuttableAPI) config(cfg *rest.Config) *rest.Config {
	cp := rest.CopyConfig(cfg)
	cp.Dial = c.dial
	return cp
}

func (c *cuttableAPI) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, fmt.Errorf("dial %s %s: connection refused (the test cut the API server off)", network, addr)
	}
	if c.hole != "" {
		addr = c.hole
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

// blackHole closes the open connections and sends new ones to a listener that accepts and
// never answers; the channel receives a value for each connection it accepts.
func (c *cuttableAPI) blackHole(t *testing.T) <-chan struct{} {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	var held []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, conn)
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { l.Close() })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hole = l.Addr().String()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
	return accepted
}

func (c *cuttableAPI) setCut(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for _, conn := range c.conns {
			conn.Close()
		}
		c.conns = nil
	}
}

// A BGP speaker that cannot start (an IPv6-only node without a router ID, no ASN) says so in
// each session's BGPSessionState; once the configuration is fixed it starts, and a change of
// router ID or ASN applies without restarting the process.
func TestBGPStartFailureIsReported(t *testing.T) {
	c, ns := clients(t)
	ctx := context.Background()
	m, err := newBGPMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	node := "bgp-" + ns
	r := &bgpRunner{node: node, log: slog.Default(), kube: c.Kube, crd: c.CRD, metrics: m,
		states: newSessionWriter(c.CRD, node, slog.Default()), secrets: newSecretCache(c.Kube, slog.Default(), nil)}
	defer func() { r.stop(); _ = r.states.Flush(ctx) }()
	// A port nothing listens on: the session tries and fails on loopback, nowhere else.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-" + ns}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "127.0.0.1", PeerPort: int32(port), PeerASN: 65001, MyASN: 65000}}
	ipv6Only := []netip.Addr{netip.MustParseAddr("2001:db8::5")}
	lastError := func() string {
		t.Helper()
		r.report()
		if err := r.states.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var st v1alpha1.BGPSessionState
		if err := c.CRD.Get().Resource("bgpsessionstates").Name(sessionStateName(node, peer.Name)).Do(ctx).Into(&st); err != nil {
			t.Fatalf("the session's BGPSessionState: %v", err)
		}
		return st.LastError
	}

	r.apply(ctx, &BGPTarget{Peers: []*v1alpha1.BGPPeer{peer}}, ipv6Only)
	if got := lastError(); !strings.Contains(got, "router ID") {
		t.Errorf("IPv6-only node without a router ID: lastError %q, want it to name the router ID", got)
	}
	peer.Spec.MyASN = 0
	peer.Spec.RouterID = "192.0.2.5"
	r.apply(ctx, &BGPTarget{Peers: []*v1alpha1.BGPPeer{peer}}, ipv6Only)
	if got := lastError(); !strings.Contains(got, "ASN") {
		t.Errorf("no ASN: lastError %q, want it to name the ASN", got)
	}

	peer.Spec.MyASN = 65000
	r.apply(ctx, &BGPTarget{Peers: []*v1alpha1.BGPPeer{peer}}, ipv6Only)
	if got := lastError(); strings.Contains(got, "router ID") || strings.Contains(got, "ASN must") {
		t.Errorf("fixed configuration: lastError %q, want the start error gone", got)
	}
	if r.running.RouterID != netip.MustParseAddr("192.0.2.5") || r.running.ASN != 65000 {
		t.Fatalf("running with router ID %s and ASN %d, want 192.0.2.5 and 65000", r.running.RouterID, r.running.ASN)
	}
	peer.Spec.RouterID, peer.Spec.MyASN = "192.0.2.6", 65002
	r.apply(ctx, &BGPTarget{Peers: []*v1alpha1.BGPPeer{peer}}, ipv6Only)
	if r.running.RouterID != netip.MustParseAddr("192.0.2.6") || r.running.ASN != 65002 {
		t.Errorf("after the change: running with router ID %s and ASN %d, want 192.0.2.6 and 65002", r.running.RouterID, r.running.ASN)
	}
}
