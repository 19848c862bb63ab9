package lab

import (
	"bytes"
	"context"
	"fmt"
	"github.com/ironlb/ironlb/internal/nsrun"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// ipBatch runs `ip -batch -` in ns with one command a line: one process for many changes.
func ipBatch(ctx context.Context, ns string, lines ...string) error {
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
	var c net.Conn
	err := InNetNS(ns, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// ListenIn opens a listener inside ns.
func ListenIn(ns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := InNetNS(ns, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacketIn opens a packet listener (UDP) inside ns.
func ListenPacketIn(ns, network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := InNetNS(ns, func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
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

// NamespacePIDs returns the processes whose network namespace is ns.
func NamespacePIDs(ns string) ([]int, error) {
	nsPath := filepath.Join("/var/run/netns", ns)
	var want syscall.Stat_t
	if err := syscall.Stat(nsPath, &want); err != nil {
		return nil, fmt.Errorf("stat %s: %w", nsPath, err)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", p.Name(), "ns", "net"), &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Cleanup kills every process inside the lab's namespaces and deletes the namespaces (and with
// them all their links). It is what a new lab runs first, so a crashed run leaves nothing behind
// for long.
func Cleanup(ctx context.Context) error {
	names, err := Namespaces()
	if err != nil {
		return err
	}
	for _, ns := range names {
		pids, err := NamespacePIDs(ns)
		if err != nil {
			return err
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range pids {
			waitGone(pid, 5*time.Second)
		}
	}
	for _, ns := range names {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
			return fmt.Errorf("deleting netns %s: %w: %s", ns, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

func waitGone(pid int, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		// A zombie still answers kill(0); its /proc/<pid>/ns entry is gone.
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net")); err != nil {
			return
		}
	}
}
