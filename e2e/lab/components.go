package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	logDir := filepath.Join(l.Config.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	cmd := command(context.WithoutCancel(ctx), ns, append([]string{bin}, args...)...)
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
