package bgp

// A small lab for the tests against real routers: network namespaces named ilbt-bgp-<pid>-*
// (never ilb-*, which the e2e lab deletes), veth links addressed from 198.51.100.0/24 and
// 2001:db8::/32, BIRD 2 and FRR's bgpd in a router namespace, and the test itself re-run
// inside the node namespace (GoBGP opens its sockets from its own goroutines, so the whole
// process must live in the namespace).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	nsPrefix = "ilbt-bgp-"
	// childEnv carries the lab's description to the test re-run in the node namespace.
	childEnv = "ILBT_BGP_LAB"
	frrBGPD  = "/usr/lib/frr/bgpd"
)

// labInfo is what the child needs to know about the lab.
type labInfo struct {
	Dir     string            // scratch directory: router configs, sockets and logs
	BIRD    string            // birdc control socket, if BIRD runs
	FRR     string            // vtysh socket directory, if FRR runs
	Links   []linkInfo        // node <-> router links
	Comment map[string]string // free-form facts for the child (e.g. the TCP-MD5 finding)
}

// linkInfo is one veth link between the node and a router namespace.
type linkInfo struct {
	Node4, Router4 netip.Addr // in 198.51.100.16*i/28
	Node6, Router6 netip.Addr // in 2001:db8:i::/64
}

// inChild returns the lab when this process is the re-run inside the node namespace.
func inChild(t *testing.T) *labInfo {
	t.Helper()
	env := os.Getenv(childEnv)
	if env == "" {
		return nil
	}
	var info labInfo
	if err := json.Unmarshal([]byte(env), &info); err != nil {
		t.Fatalf("decoding %s: %v", childEnv, err)
	}
	return &info
}

// requireRoot fails the test, with the reason, when it cannot build its lab.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces and runs BIRD and FRR in them (CI runs it as root)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this test needs %s (Debian packages iproute2, bird2, frr): %v", tool, err)
		}
	}
}

var cleanLeftoversOnce sync.Once

// removeLeftovers deletes ilbt-bgp-* namespaces whose creating process is gone, after
// killing what still runs in them. Namespaces of a live process (a concurrent run) stay.
func removeLeftovers(t *testing.T) {
	cleanLeftoversOnce.Do(func() {
		out, err := exec.Command("ip", "netns", "list").Output()
		if err != nil {
			t.Logf("listing namespaces: %v", err)
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || !strings.HasPrefix(fields[0], nsPrefix) {
				continue
			}
			name := fields[0]
			pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, nsPrefix), "-", 2)[0])
			if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
				continue
			}
			killNamespace(name)
			t.Logf("removed leftover namespace %s", name)
		}
	})
}

// killNamespace kills the processes in a namespace of ours and deletes it.
func killNamespace(name string) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
}

// lab is the parent's handle on the namespaces and routers of one test.
type lab struct {
	t      *testing.T
	info   labInfo
	node   string // the node namespace
	router string // the router namespace
}

// newLab creates a node and a router namespace joined by links veth pairs.
func newLab(t *testing.T, links int) *lab {
	t.Helper()
	requireRoot(t, "bird", "birdc", "vtysh", frrBGPD)
	removeLeftovers(t)
	l := &lab{t: t, info: labInfo{Dir: t.TempDir(), Comment: map[string]string{}}}
	base := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), shortName(t.Name()))
	l.node, l.router = base+"-n", base+"-r"
	for _, ns := range []string{l.node, l.router} {
		killNamespace(ns) // a previous test of this process that failed to clean up
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { killNamespace(ns) })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	for i := 1; i <= links; i++ {
		li := linkInfo{
			Node4:   netip.AddrFrom4([4]byte{198, 51, 100, byte(16*i + 2)}),
			Router4: netip.AddrFrom4([4]byte{198, 51, 100, byte(16*i + 1)}),
			Node6:   netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::2", i)),
			Router6: netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i)),
		}
		n, r := fmt.Sprintf("n%d", i), fmt.Sprintf("r%d", i)
		run(t, "ip", "link", "add", n, "netns", l.node, "type", "veth", "peer", "name", r, "netns", l.router)
		for _, side := range []struct{ ns, dev string }{{l.node, n}, {l.router, r}} {
			a4, a6 := li.Node4, li.Node6
			if side.ns == l.router {
				a4, a6 = li.Router4, li.Router6
			}
			run(t, "ip", "-n", side.ns, "addr", "add", a4.String()+"/28", "dev", side.dev)
			run(t, "ip", "-n", side.ns, "addr", "add", a6.String()+"/64", "dev", side.dev, "nodad")
			run(t, "ip", "-n", side.ns, "link", "set", side.dev, "up")
		}
		l.info.Links = append(l.info.Links, li)
	}
	return l
}

// shortName keeps namespace names readable and short.
func shortName(s string) string {
	s = strings.ToLower(strings.TrimPrefix(s, "Test"))
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
	return s[:min(len(s), 20)]
}

// addAddress adds an address on link i (1-based), on the node's side or the router's.
func (l *lab) addAddress(router bool, i int, addr netip.Addr) {
	l.t.Helper()
	ns, dev := l.node, fmt.Sprintf("n%d", i)
	if router {
		ns, dev = l.router, fmt.Sprintf("r%d", i)
	}
	bits := 28
	if addr.Is6() {
		bits = 64
	}
	args := []string{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", addr, bits), "dev", dev}
	if addr.Is6() {
		args = append(args, "nodad")
	}
	run(l.t, "ip", args...)
}

// startBIRD runs BIRD in the router namespace with conf (its log and socket go to the
// lab's directory) and waits until it answers.
func (l *lab) startBIRD(conf string) {
	l.t.Helper()
	dir := filepath.Join(l.info.Dir, "bird")
	must(l.t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, "bird.conf")
	must(l.t, os.WriteFile(path, []byte(fmt.Sprintf("log %q all;\n%s", filepath.Join(dir, "bird.log"), conf)), 0o644))
	l.info.BIRD = filepath.Join(dir, "bird.ctl")
	l.startDaemon("bird", dir, func() error {
		_, err := birdc(l.info.BIRD, "show status")
		return err
	}, "bird", "-f", "-c", path, "-s", l.info.BIRD, "-P", filepath.Join(dir, "bird.pid"))
}

// startFRR runs FRR's bgpd (without zebra) in the router namespace with conf.
func (l *lab) startFRR(conf string) {
	l.t.Helper()
	dir := filepath.Join(l.info.Dir, "frr")
	must(l.t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, "bgpd.conf")
	must(l.t, os.WriteFile(path, []byte(fmt.Sprintf("log file %s\n%s", filepath.Join(dir, "bgpd.log"), conf)), 0o644))
	l.info.FRR = dir
	l.startDaemon("frr", dir, func() error {
		_, err := vtysh(dir, "show bgp summary")
		return err
	}, frrBGPD, "-Z", "-S", "-n", "-f", path, "--vty_socket", dir, "-i", filepath.Join(dir, "bgpd.pid"))
}

// startDaemon starts argv in the router namespace and waits until ready returns nil;
// cleanup kills it by its own pid.
func (l *lab) startDaemon(kind, dir string, ready func() error, argv ...string) {
	l.t.Helper()
	out, err := os.Create(filepath.Join(dir, kind+".out"))
	must(l.t, err)
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.router}, argv...)...)
	cmd.Stdout, cmd.Stderr = out, out
	must(l.t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if l.t.Failed() {
			for _, f := range []string{kind + ".out", "bird.log", "bgpd.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && len(b) > 0 {
					l.t.Logf("%s %s:\n%s", kind, f, tail(string(b), 60))
				}
			}
		}
	})
	waitFor(l.t, 10*time.Second, func() (bool, string) {
		select {
		case <-done:
			l.t.Fatalf("%s exited at start (its output is below)", kind)
		default:
		}
		err := ready()
		return err == nil, fmt.Sprintf("%s is not ready: %v", kind, err)
	})
}

// runChild re-runs the calling test inside the node namespace and fails if it fails. Its
// output is logged line by line.
func (l *lab) runChild() {
	l.t.Helper()
	exe, err := os.Executable()
	must(l.t, err)
	env, err := json.Marshal(l.info)
	must(l.t, err)
	cmd := exec.Command("ip", "netns", "exec", l.node, exe, "-test.run=^"+l.t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), childEnv+"="+string(env))
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l.t.Log("│ " + sc.Text())
		}
	}()
	err = cmd.Run()
	pw.Close()
	<-lines
	if err != nil {
		l.t.Fatalf("the test run in namespace %s failed: %v", l.node, err)
	}
}

// birdc runs a BIRD CLI command on the control socket.
func birdc(sock, command string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", sock}, strings.Fields(command)...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", command, err, out)
	}
	return string(out), nil
}

// vtysh runs an FRR CLI command against bgpd.
func vtysh(dir, command string) (string, error) {
	out, err := exec.Command("vtysh", "--vty_socket", dir, "-d", "bgpd", "-c", command).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -c %q: %w: %s", command, err, out)
	}
	return string(out), nil
}

// birdRoute is one route of `birdc show route all`.
type birdRoute struct {
	Prefix   string
	Protocol string
	Via      string
	Attrs    map[string]string // "BGP.community" -> "(65000,100) (65000,200)"
}

// birdRoutes parses `show route all`: every route, including the non-best ones.
func birdRoutes(out string) []birdRoute {
	var routes []birdRoute
	prefix := ""
	for _, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(line, "BIRD ") || strings.HasPrefix(line, "Table "):
		case strings.Contains(line, " unicast ["):
			fields := strings.Fields(line)
			if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
				prefix = fields[0]
				fields = fields[1:]
			}
			r := birdRoute{Prefix: prefix, Attrs: map[string]string{}}
			if len(fields) > 1 {
				r.Protocol = strings.TrimPrefix(fields[1], "[")
			}
			routes = append(routes, r)
		case len(routes) > 0 && strings.HasPrefix(trimmed, "via "):
			routes[len(routes)-1].Via = strings.Fields(trimmed)[1]
		case len(routes) > 0 && strings.Contains(trimmed, ": "):
			k, v, _ := strings.Cut(trimmed, ": ")
			routes[len(routes)-1].Attrs[k] = v
		}
	}
	return routes
}

// birdRoutesOf returns BIRD's routes learned from protocol proto, by prefix.
func birdRoutesOf(t *testing.T, sock, proto string) map[string]birdRoute {
	t.Helper()
	out, err := birdc(sock, "show route all protocol "+proto)
	if err != nil {
		t.Fatalf("%v", err)
	}
	m := map[string]birdRoute{}
	for _, r := range birdRoutes(out) {
		m[r.Prefix] = r
	}
	return m
}

// frrPath is the part of `show bgp <afi> unicast <prefix> json` the tests read.
type frrPath struct {
	Valid          bool                    `json:"valid"`
	Community      struct{ String string } `json:"community"`
	LargeCommunity struct{ String string } `json:"largeCommunity"`
	LocalPref      *uint32                 `json:"locPrf"`
	ASPath         struct{ String string } `json:"aspath"`
	Nexthops       []struct{ IP string }   `json:"nexthops"`
}

// frrRoutes returns FRR's table for a family ("ipv4" or "ipv6"): prefix -> next hops.
func frrRoutes(t *testing.T, dir, afi string) map[string][]string {
	t.Helper()
	out, err := vtysh(dir, "show bgp "+afi+" unicast json")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var table struct {
		Routes map[string][]struct {
			Nexthops []struct{ IP string } `json:"nexthops"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &table); err != nil {
		t.Fatalf("decoding FRR's table: %v\n%s", err, out)
	}
	m := map[string][]string{}
	for prefix, paths := range table.Routes {
		for _, p := range paths {
			for _, nh := range p.Nexthops {
				m[prefix] = append(m[prefix], nh.IP)
			}
		}
	}
	return m
}

// frrPrefix returns FRR's paths for one prefix.
func frrPrefix(t *testing.T, dir, afi, prefix string) []frrPath {
	t.Helper()
	out, err := vtysh(dir, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix))
	if err != nil {
		t.Fatalf("%v", err)
	}
	var detail struct {
		Paths []frrPath `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &detail); err != nil {
		t.Fatalf("decoding FRR's paths for %s: %v\n%s", prefix, err, out)
	}
	return detail.Paths
}

// waitFor polls cond until it holds, or fails the test with cond's last explanation.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// started runs a speaker for the rest of the test; stop cancels it and waits for Run.
type started struct {
	*Speaker
	stop func() error
}

func startSpeaker(t *testing.T, cfg Config) *started {
	t.Helper()
	return runSpeaker(t, New(cfg))
}

// runSpeaker runs s for the rest of the test.
func runSpeaker(t *testing.T, s *Speaker) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	// Wait until Run has started GoBGP (or failed).
	waitFor(t, 5*time.Second, func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.phase != phaseNew, "Run has not started"
	})
	return &started{Speaker: s, stop: stop}
}

// session returns the named session's state.
func (s *started) session(t *testing.T, name string) SessionState {
	t.Helper()
	for _, st := range s.Sessions() {
		if st.Peer == name {
			return st
		}
	}
	t.Fatalf("no session %q in %+v", name, s.Sessions())
	return SessionState{}
}

// waitState waits until the named session is in state want.
func (s *started) waitState(t *testing.T, name string, want State, timeout time.Duration) SessionState {
	t.Helper()
	var st SessionState
	waitFor(t, timeout, func() (bool, string) {
		st = s.session(t, name)
		return st.State == want, fmt.Sprintf("session %s is %s, want %s (last error %q)", name, st.State, want, st.LastError)
	})
	return st
}
