package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// BuildComponents builds ironlb's components (cmd/ironlb-controller, cmd/ironlb-speaker) into
// dir and returns their paths by name. A command that does not exist yet is left out, so the lab
// works at every stage of the project.
func (l *Lab) BuildComponents(ctx context.Context, dir string) (map[string]string, error) {
	built := map[string]string{}
	for _, name := range []string{"ironlb-controller", "ironlb-speaker"} {
		src := filepath.Join(l.Config.RepoRoot, "cmd", name)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		out := filepath.Join(dir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/"+name)
		cmd.Dir = l.Config.RepoRoot
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("lab: building %s: %w: %s", name, err, b)
		}
		built[name] = out
	}
	return built, nil
}

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

// IronLB is ironlb as the lab runs it: the Helm chart's pods on a real cluster, or (Config.
// Simulated) the controller in NSCtl and a speaker per node as lab processes.
type IronLB struct {
	// Chart is set when ironlb runs from the Helm chart; Controller and Speakers are then nil.
	Chart      bool
	Controller *Process
	Speakers   map[string]*Process // by node name
	bins       map[string]string
	keyFile    string
	lab        *Lab
}

// StartIronLB builds ironlb's commands and starts those that exist: the controller (with its
// namespace, as the Helm chart has it) and a speaker in every node namespace. extraSpeakerArgs
// are added to every speaker's flags. On a real cluster it installs the Helm chart instead.
func (l *Lab) StartIronLB(ctx context.Context, extraSpeakerArgs ...string) (*IronLB, error) {
	if !l.Config.Simulated {
		var set []string
		for i, a := range extraSpeakerArgs {
			set = append(set, fmt.Sprintf("speaker.extraArgs[%d]=%s", i, a))
		}
		if err := l.installChart(ctx, set...); err != nil {
			return nil, err
		}
		return &IronLB{Chart: true, lab: l}, nil
	}
	bins, err := l.BuildComponents(ctx, filepath.Join(l.Config.Dir, "bin"))
	if err != nil {
		return nil, err
	}
	ilb := &IronLB{Speakers: map[string]*Process{}, bins: bins, keyFile: filepath.Join(l.Config.Dir, "memberlist.key"), lab: l}
	// The memberlist key, as the chart's Secret would hold it: 32 random bytes, hex.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("lab: memberlist key: %w", err)
	}
	if err := os.WriteFile(ilb.keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := l.EnsureNamespace(ctx, SystemNamespace); err != nil {
		return nil, err
	}
	if bin, ok := bins["ironlb-controller"]; ok {
		args := []string{"--kubeconfig", l.NodeKubeconfig, "--namespace", SystemNamespace, "--identity", "controller-0"}
		if ilb.Controller, err = l.Start(ctx, "controller", NSCtl, bin, args...); err != nil {
			return nil, err
		}
		l.supervise(ilb.Controller, func() (*Process, error) { return l.Start(ctx, "controller", NSCtl, bin, args...) })
	}
	for _, n := range l.Nodes {
		if _, err := ilb.StartSpeaker(ctx, l, n, extraSpeakerArgs...); err != nil {
			return nil, err
		}
	}
	return ilb, nil
}

// StartSpeaker (re)starts the speaker of node n; it does nothing before cmd/ironlb-speaker
// exists. On a real cluster it lets the DaemonSet run a speaker pod on n again (extraArgs are
// the chart's) and waits until it is ready.
func (ilb *IronLB) StartSpeaker(ctx context.Context, l *Lab, n *Node, extraArgs ...string) (*Process, error) {
	if ilb.Chart {
		return nil, ilb.startChartSpeaker(ctx, n)
	}
	bin, ok := ilb.bins["ironlb-speaker"]
	if !ok {
		return nil, nil
	}
	// --namespace: the speaker's Lease, as the chart's POD_NAMESPACE gives it.
	args := append([]string{"--kubeconfig", l.NodeKubeconfig, "--node-name", n.Name, "--namespace", SystemNamespace, "--memberlist-key-file", ilb.keyFile}, extraArgs...)
	p, err := l.Start(ctx, "speaker-"+n.Name, n.NetNS, bin, args...)
	if err != nil {
		return nil, err
	}
	ilb.Speakers[n.Name] = p
	return p, nil
}

// supervise restarts a process that exits on its own (as a Deployment would: the controller
// exits when it loses its leader Lease), until the lab goes down.
func (l *Lab) supervise(p *Process, restart func() (*Process, error)) {
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		for {
			select {
			case <-l.bgCtx.Done():
				return
			case <-p.Exited():
			}
			select {
			case <-l.bgCtx.Done():
				return
			case <-time.After(time.Second):
			}
			l.log.Warn("lab: restarting a component that exited", "name", p.Name)
			next, err := restart()
			if err != nil {
				l.log.Error("lab: restarting", "name", p.Name, "err", err)
				return
			}
			p = next
		}
	}()
}
