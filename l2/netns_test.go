package l2

import (
	"bytes"
	"context"
	"fmt"
	"github.com/ironlb/ironlb/internal/nsrun"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/packet"
)

// Tests that need real links build them from veth pairs and a bridge in throwaway network
// namespaces named nsPrefix<pid>-<n>-<role>. The lab deletes every "ilb-*" namespace when
// it starts, so ours use another prefix; the pid lets a run remove what a crashed run left
// without touching a concurrent one.
const nsPrefix = "ilbt-l2-"

// nsSeq numbers the namespace sets of one test process.
var nsSeq atomic.Int64

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if err := removeLeftoverNamespaces(); err != nil {
			fmt.Fprintln(os.Stderr, "removing namespaces of crashed runs:", err)
		}
	}
	os.Exit(m.Run())
}

// removeLeftoverNamespaces deletes the namespaces whose creating process is gone.
func removeLeftoverNamespaces() error {
	entries, err := os.ReadDir("/var/run/netns")
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err == nil && pid != os.Getpid() {
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
				continue // a concurrent run
			}
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			return fmt.Errorf("deleting %s: %w: %s", e.Name(), err, out)
		}
	}
	return nil
}

// requireRoot fails the test, rather than skipping it, when it cannot create namespaces
// and raw sockets: a skipped data-plane test looks like a passing one in CI.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces and veth links (CAP_SYS_ADMIN, CAP_NET_ADMIN) and opens packet sockets (CAP_NET_RAW); run `go test` as root")
	}
}

// testNet is a set of namespaces for one test.
type testNet struct {
	t      testing.TB
	prefix string
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	requireRoot(t)
	return &testNet{t: t, prefix: fmt.Sprintf("%s%d-%d-", nsPrefix, os.Getpid(), nsSeq.Add(1))}
}

// ns creates a namespace for role, with lo up and IPv6 duplicate address detection off (so
// addresses are usable at once), and deletes it when the test ends.
func (n *testNet) ns(role string) string {
	n.t.Helper()
	name := n.prefix + role
	n.must("", "ip", "netns", "add", name)
	n.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			n.t.Errorf("deleting netns %s: %v: %s", name, err, out)
		}
	})
	n.must(name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	n.must("", "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// bridge creates an up bridge in ns.
func (n *testNet) bridge(ns, name string) {
	n.t.Helper()
	n.must("", "ip", "-n", ns, "link", "add", name, "type", "bridge", "forward_delay", "0")
	n.must("", "ip", "-n", ns, "link", "set", name, "up")
}

// veth links interface ifA in nsA with ifB in nsB, both up.
func (n *testNet) veth(nsA, ifA, nsB, ifB string) {
	n.t.Helper()
	n.must("", "ip", "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	n.must("", "ip", "-n", nsA, "link", "set", ifA, "up")
	n.must("", "ip", "-n", nsB, "link", "set", ifB, "up")
}

// port links ifname in ns to bridge br in brNS, through a port named port.
func (n *testNet) port(brNS, br, port, ns, ifname string) {
	n.t.Helper()
	n.veth(brNS, port, ns, ifname)
	n.must("", "ip", "-n", brNS, "link", "set", port, "master", br)
}

// addr adds addresses (with prefix length) to ifname in ns.
func (n *testNet) addr(ns, ifname string, prefixes ...string) {
	n.t.Helper()
	for _, p := range prefixes {
		n.must("", "ip", "-n", ns, "addr", "add", p, "dev", ifname)
	}
}

// mac returns ifname's Ethernet address in ns.
func (n *testNet) mac(ns, ifname string) mac {
	n.t.Helper()
	var m mac
	if err := inNetNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		m = mac(ifi.HardwareAddr)
		return nil
	}); err != nil {
		n.t.Fatal(err)
	}
	return m
}

// must runs a command in ns ("" for the test's own) and returns its output, failing the
// test on error.
func (n *testNet) must(ns string, argv ...string) string {
	n.t.Helper()
	out, err := run(ns, argv...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// run runs a command in ns ("" for the test's own) and returns its combined output.
func run(ns string, argv ...string) (string, error) {
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.String(), nil
}

// inNetNS runs fn on an OS thread switched into namespace ns; sockets fn opens stay there.
func inNetNS(ns string, fn func() error) error { return nsrun.Do(ns, fn) }

// startAnnouncer runs an Announcer whose sockets live in namespace ns until the test ends,
// recording its events.
func startAnnouncer(t testing.TB, ns string, cfg AnnouncerConfig) (*Announcer, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.OpenIn = func(open func() error) error { return inNetNS(ns, open) }
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("netns", ns)
	cfg.OnEvent = rec.add
	a := NewAnnouncer(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a, rec
}

// recorder keeps an announcer's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// mark returns a position in the events: wait looks at the events after it.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// since returns the events after mark.
func (r *recorder) since(mark int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[mark:])
}

// wait returns the first event after mark for link of the given kind, or fails after d.
func (r *recorder) wait(t *testing.T, mark int, link Link, kind EventKind, d time.Duration) Event {
	t.Helper()
	var found *Event
	if !waitFor(d, func() bool {
		for _, e := range r.since(mark) {
			if e.Link == link && e.Kind == kind {
				found = &e
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no %v event for %v within %v; events: %+v", kind, link, d, r.since(mark))
	}
	return *found
}

// waitUp waits until every given link of a is up.
func waitUp(t testing.TB, a *Announcer, links ...Link) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		up := map[Link]bool{}
		for _, s := range a.Status() {
			up[s.Link] = s.Up
		}
		all := true
		for _, l := range links {
			all = all && up[l]
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("links %v not up after 5s; status %+v", links, a.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sniffer captures the frames of one EtherType that an interface receives, from a packet
// socket in the interface's namespace.
type sniffer struct {
	conn   *packet.Conn
	frames chan captured
}

// captured is a frame and when it was read.
type captured struct {
	b  []byte
	at time.Time
}

func sniff(t testing.TB, ns, ifname string, etherType int) *sniffer {
	t.Helper()
	var s sniffer
	if err := inNetNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		s.conn, err = packet.Listen(ifi, packet.Raw, etherType, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.frames = make(chan captured, 100000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			buf := make([]byte, 1514)
			n, _, err := s.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case s.frames <- captured{buf[:n], time.Now()}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		s.conn.Close()
		<-done
	})
	return &s
}

// send writes a frame to its destination address.
func (s *sniffer) send(t testing.TB, frame []byte) {
	t.Helper()
	if _, err := s.conn.WriteTo(frame, &packet.Addr{HardwareAddr: frame[0:6]}); err != nil {
		t.Fatal(err)
	}
}

// collect returns the frames that match keep among those captured so far and those that
// arrive within d.
func (s *sniffer) collect(d time.Duration, keep func([]byte) bool) []captured {
	var out []captured
	timeout := time.After(d)
	for {
		select {
		case f := <-s.frames:
			if keep(f.b) {
				out = append(out, f)
			}
			continue
		default:
		}
		select {
		case f := <-s.frames:
			if keep(f.b) {
				out = append(out, f)
			}
		case <-timeout:
			return out
		}
	}
}

// drain discards what was captured so far.
func (s *sniffer) drain() {
	for {
		select {
		case <-s.frames:
		default:
			return
		}
	}
}
