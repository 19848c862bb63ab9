package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Faults the e2e fault suite injects (issue 14): each returns how to repair it, and Down repairs
// what a failed test left.

// faultTable is the nftables table the fault hooks add in a node's namespace; ironlb's own
// table (inet ironlb) is never touched.
const faultTable = "ilb-fault"

// CutMemberlist drops memberlist's port (TCP and UDP, both directions) on node n, so n and the
// other speakers cannot gossip while everything else (the API server, BGP, ARP, forwarding)
// still works: a partition of memberlist alone. heal removes the rules.
func (l *Lab) CutMemberlist(ctx context.Context, n *Node, port int) (heal func(context.Context) error, err error) {
	p := strconv.Itoa(port)
	rules := strings.Join([]string{
		"table inet " + faultTable + " {",
		"  chain in { type filter hook input priority -10; udp dport " + p + " drop; tcp dport " + p + " drop; }",
		"  chain out { type filter hook output priority -10; udp dport " + p + " drop; tcp dport " + p + " drop; }",
		"}",
	}, "\n")
	if err := nft(ctx, n.NetNS, rules); err != nil {
		return nil, err
	}
	heal = func(ctx context.Context) error {
		if out, err := Exec(ctx, n.NetNS, "nft", "delete", "table", "inet", faultTable); err != nil && !strings.Contains(string(out), "No such file") {
			return fmt.Errorf("lab: healing the memberlist cut on %s: %w: %s", n.Name, err, out)
		}
		return nil
	}
	l.onDown(func() { _ = heal(context.Background()) })
	return heal, nil
}

func nft(ctx context.Context, ns, rules string) error {
	cmd := Command(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: nft in %s: %w: %s", ns, err, out)
	}
	return nil
}

// PauseAPIServer freezes etcd and the API server (apiserver.Server.Pause): every client, the
// speakers, the kubelets, kube-controller-manager and the lab's own, waits on connections that
// never answer. resume thaws them.
func (l *Lab) PauseAPIServer() (resume func() error, err error) {
	if err := l.API.Pause(); err != nil {
		return nil, err
	}
	l.onDown(func() { _ = l.API.Resume() })
	return l.API.Resume, nil
}

// RestartRouter kills r's daemon (SIGKILL: no NOTIFICATION, its sessions drop as in a crash)
// and starts it again with the same configuration. BIRD's kernel routes stay until the new
// BIRD takes over the kernel table.
func (l *Lab) RestartRouter(ctx context.Context, r *Router) error {
	pidFile := filepath.Join(r.dir, map[string]string{"bird": "bird.pid", "frr": "bgpd.pid"}[r.Kind])
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("lab: %s's pid: %w", r.Kind, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return fmt.Errorf("lab: %s's pid file %s: %w", r.Kind, pidFile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("lab: killing %s: %w", r.Kind, err)
	}
	waitGone(pid, 5*time.Second)
	_ = os.Remove(pidFile)
	_ = os.Remove(r.socket())
	return r.start(ctx, l)
}

// KillSpeaker kills n's speaker process (SIGKILL: a crash, no memberlist leave, no BGP
// NOTIFICATION) and leaves its pod, so the kubelet restarts the container; WaitSpeaker with a
// time before the kill waits for the new one.
func (ilb *IronLB) KillSpeaker(n *Node) error {
	pids, err := speakerPIDs(n)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("lab: no ironlb-speaker process in %s", n.NetNS)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("lab: killing the speaker of %s: %w", n.Name, err)
		}
	}
	return nil
}
