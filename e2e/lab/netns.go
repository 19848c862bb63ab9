package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ironlb/ironlb/internal/nsrun"
)

// Prefix starts the name of every network namespace the lab creates, so that a run can find and
// remove what a crashed run left behind.
const Prefix = "ilb-"

// Exec runs a command inside network namespace ns ("" runs it in the caller's) and returns its
// combined output; the error carries the output.
func Exec(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	cmd := Command(ctx, ns, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s in %q: %w: %s", strings.Join(argv, " "), ns, err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// Command returns an exec.Cmd that runs argv inside network namespace ns ("" for the caller's);
// it is killed when ctx ends or the lab's process dies.
func Command(ctx context.Context, ns string, argv ...string) *exec.Cmd {
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// IPBatch runs `ip -batch -` in ns with one command a line: one process for many changes.
func IPBatch(ctx context.Context, ns string, lines ...string) error {
	argv := []string{"ip", "-batch", "-"}
	if ns != "" {
		argv = []string{"ip", "-n", ns, "-batch", "-"}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -batch in %q: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// InNetNS runs fn on an OS thread switched into network namespace ns. Sockets created by fn stay
// in ns after the thread switches back, which is how the lab serves pods and proxies the API
// server from its own process.
func InNetNS(ns string, fn func() error) error { return nsrun.Do(ns, fn) }

// DialIn opens a TCP connection from inside ns.
func DialIn(ctx context.Context, ns, addr string) (net.Conn, error) {
	return DialFrom(ctx, ns, netip.Addr{}, addr)
}

// DialFrom opens a TCP connection from inside ns, from source address src when it is valid.
func DialFrom(ctx context.Context, ns string, src netip.Addr, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	var c net.Conn
	err := InNetNS(ns, func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// Namespaces lists the network namespaces whose names start with Prefix.
func Namespaces() ([]string, error) {
	entries, err := os.ReadDir("/var/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing netns: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), Prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Cleanup kills every process inside the lab's namespaces (and their descendants: containers
// of a real node live in pod namespaces under their node's shims), removes the mounts and files
// of real nodes under RuntimeRoot, deletes the namespaces (and with them all their links) and
// the cgroups of containers that are gone. It is what a new lab runs first, so a crashed run
// leaves nothing behind for long.
func Cleanup(ctx context.Context) error {
	names, err := Namespaces()
	if err != nil {
		return err
	}
	var pins []string
	for _, ns := range names {
		pins = append(pins, filepath.Join("/var/run/netns", ns))
	}
	mounts, err := mountsUnder(RuntimeRoot)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.fstype == "nsfs" {
			pins = append(pins, m.path)
		}
	}
	pids, err := pidsInNetNS(pins)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		waitGone(pid, 5*time.Second)
	}
	// Deepest first; a lazy unmount also detaches what a dying process still holds.
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i].path, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("unmounting %s: %w", mounts[i].path, err)
		}
	}
	if err := os.RemoveAll(RuntimeRoot); err != nil {
		return fmt.Errorf("removing %s: %w", RuntimeRoot, err)
	}
	for _, ns := range names {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
			return fmt.Errorf("deleting netns %s: %w: %s", ns, err, bytes.TrimSpace(out))
		}
	}
	removeDeadCgroups()
	return nil
}

type mount struct{ path, fstype string }

// mountsUnder lists the host's mount points at or below dir, parents before children.
func mountsUnder(dir string) ([]mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	var out []mount
	for _, line := range strings.Split(string(data), "\n") {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		p := unescapeMountPath(f[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, mount{path: p, fstype: f[sep+1]})
		}
	}
	slices.SortStableFunc(out, func(a, b mount) int { return strings.Count(a.path, "/") - strings.Count(b.path, "/") })
	return out, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pidsInNetNS returns the processes (other than this one) in any of the network namespaces
// pinned at paths, and all their descendants.
func pidsInNetNS(paths []string) ([]int, error) {
	type key struct{ dev, ino uint64 }
	want := map[key]bool{}
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err == nil {
			want[key{st.Dev, st.Ino}] = true
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	children := map[int][]int{}
	var roots []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat")); err == nil {
			// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
			if i := bytes.LastIndexByte(stat, ')'); i > 0 {
				if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
					if ppid, err := strconv.Atoi(f[1]); err == nil {
						children[ppid] = append(children[ppid], pid)
					}
				}
			}
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", p.Name(), "ns", "net"), &st) == nil && want[key{st.Dev, st.Ino}] {
			roots = append(roots, pid)
		}
	}
	seen := map[int]bool{}
	var out []int
	var walk func(int)
	walk = func(pid int) {
		if seen[pid] || pid == os.Getpid() {
			return
		}
		seen[pid] = true
		out = append(out, pid)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, pid := range roots {
		walk(pid)
	}
	return out, nil
}

func waitGone(pid int, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		// A zombie still answers kill(0); its /proc/<pid>/ns entry is gone.
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net")); err != nil {
			return
		}
	}
}
