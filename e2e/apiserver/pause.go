package apiserver

import (
	"errors"
	"fmt"
	"syscall"
)

// Pause freezes etcd and the API server (SIGSTOP to their process groups), as a control-plane
// host that hangs: connections are accepted by the kernel and never answered, so clients wait
// for their timeouts, the hardest kind of outage. Resume thaws them.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume thaws what Pause froze.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	var errs []error
	for _, p := range s.procs {
		if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
			errs = append(errs, fmt.Errorf("apiserver: %v to %s: %w", sig, p.cmd.Path, err))
		}
	}
	return errors.Join(errs...)
}
