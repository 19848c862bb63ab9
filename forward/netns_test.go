package forward

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ironlb/ironlb/internal/nsrun"
)

// Tests that load the table into the kernel run in network namespaces named
// "ilbt-fwd-<pid>-<n>-<role>". Not "ilb-": the lab deletes every ilb-* namespace when it starts,
// and lab tests may run at the same time. The pid lets a run remove what a crashed run left
// behind without touching a run still going.
const nsPrefix = "ilbt-fwd-"

var nsCounter atomic.Int64

// requireRoot fails the test without root: these tests are part of CI, and a silent skip would
// hide that they did not run.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces and loads nftables rules (run go test as root)")
	}
}

// removeStaleNamespaces deletes ilbt-fwd-* namespaces whose creating process is gone.
func removeStaleNamespaces(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err == nil && (pid == os.Getpid() || syscall.Kill(pid, 0) == nil) {
			continue // its test run is still going
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("removing leftover namespace %s: %v: %s", e.Name(), err, out)
		}
	}
}

// newNamespace creates a namespace for role, with loopback up, deleted when the test ends.
func newNamespace(t testing.TB, role string) string {
	t.Helper()
	requireRoot(t)
	removeStaleNamespaces(t)
	name := fmt.Sprintf("%s%d-%d-%s", nsPrefix, os.Getpid(), nsCounter.Add(1), role)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	// No duplicate address detection: link-local addresses would stay tentative for a second
	// or two, and neighbour discovery with them.
	sysctl(t, name, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return name
}

// run runs a command and fails the test on error.
func run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := runErr(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.String(), nil
}

// inNamespace runs fn on an OS thread switched into namespace ns. Processes started by fn (nft)
// and sockets it opens belong to ns; the sockets stay there after the thread switches back.
func inNamespace(t testing.TB, ns string, fn func()) {
	t.Helper()
	if err := inNamespaceErr(ns, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func inNamespaceErr(ns string, fn func() error) error { return nsrun.Do(ns, fn) }

// nftIn runs nft with args inside ns and returns its output.
func nftIn(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns, "nft"}, args...)...)
}

// veth connects namespace a (interface aName) and b (interface bName) and brings both up.
func veth(t testing.TB, a, aName, b, bName string) {
	t.Helper()
	run(t, "ip", "-n", a, "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b)
	run(t, "ip", "-n", a, "link", "set", aName, "up")
	run(t, "ip", "-n", b, "link", "set", bName, "up")
}

// addr adds addresses (CIDR notation) to an interface; IPv6 ones skip duplicate address
// detection so they work at once.
func addr(t testing.TB, ns, dev string, cidrs ...string) {
	t.Helper()
	for _, c := range cidrs {
		args := []string{"ip", "-n", ns, "addr", "add", c, "dev", dev}
		if strings.Contains(c, ":") {
			args = append(args, "nodad")
		}
		run(t, args...)
	}
}

// route adds a route in ns: "ip route add <spec...>".
func route(t testing.TB, ns string, spec ...string) {
	t.Helper()
	args := []string{"ip", "-n", ns, "route", "add"}
	if strings.Contains(spec[0], ":") {
		args = []string{"ip", "-n", ns, "-6", "route", "add"}
	}
	run(t, append(args, spec...)...)
}

// sysctl sets sysctls inside ns.
func sysctl(t testing.TB, ns string, settings ...string) {
	t.Helper()
	for _, s := range settings {
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", s)
	}
}
