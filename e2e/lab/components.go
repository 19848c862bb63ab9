package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Process is a component the lab started; Stop sends a signal and waits for it to exit.
type Process struct {
	Name  string
	NetNS string
	cmd   *exec.Cmd
	done  chan struct{}
}

// Start runs bin with args inside ns, logging to Dir/logs/<name>.log. The process dies with
// the lab's process (Pdeathsig) and is stopped by Down.
func (l *Lab) Start(ctx context.Context, name, ns, bin string, args ...string) (*Process, error) {
	return l.start(name, ns, Command(context.WithoutCancel(ctx), ns, append([]string{bin}, args...)...))
}

// StartHostMounts is Start for a process that enters only ns's network namespace and stays in
// the host's mount namespace (`ip netns exec` gives each process a private one): containerd and
// the kubelet must see each other's mounts, and Cleanup must see them all.
func (l *Lab) StartHostMounts(ctx context.Context, name, ns, bin string, args ...string) (*Process, error) {
	argv := append([]string{"nsenter", "--net=" + filepath.Join("/var/run/netns", ns), "--", bin}, args...)
	cmd := exec.CommandContext(context.WithoutCancel(ctx), argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return l.start(name, ns, cmd)
}

func (l *Lab) start(name, ns string, cmd *exec.Cmd) (*Process, error) {
	logDir := filepath.Join(l.Config.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("lab: starting %s: %w", name, err)
	}
	p := &Process{Name: name, NetNS: ns, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	l.onDown(func() { p.Stop(os.Kill, 5*time.Second) })
	return p, nil
}

// Stop signals the process and waits up to timeout for it to exit, then kills it.
func (p *Process) Stop(sig os.Signal, timeout time.Duration) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// PID is the process id.
func (p *Process) PID() string { return strconv.Itoa(p.cmd.Process.Pid) }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// IronLB is ironlb as the lab runs it: installed from its Helm chart (the controller
// Deployment and the speaker DaemonSet).
type IronLB struct {
	lab *Lab
}

// StartIronLB installs ironlb's Helm chart and waits until its pods are ready.
// extraSpeakerArgs are added to every speaker's flags (speaker.extraArgs).
func (l *Lab) StartIronLB(ctx context.Context, extraSpeakerArgs ...string) (*IronLB, error) {
	var set []string
	for i, a := range extraSpeakerArgs {
		set = append(set, fmt.Sprintf("speaker.extraArgs[%d]=%s", i, a))
	}
	if err := l.installChart(ctx, set...); err != nil {
		return nil, err
	}
	return &IronLB{lab: l}, nil
}

// StartSpeaker lets the DaemonSet run a speaker pod on n again (after StopSpeaker) and waits
// until it is ready.
func (ilb *IronLB) StartSpeaker(ctx context.Context, n *Node) error {
	return ilb.startChartSpeaker(ctx, n)
}
