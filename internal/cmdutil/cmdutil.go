// Package cmdutil is the start-up both binaries share: logging, the client configuration, the
// metrics registry, and running until SIGTERM.
package cmdutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Setup returns a JSON logger at level (also used for client-go's own logs), the client
// configuration (kubeconfig, or in-cluster when empty) and a registry with Go and process
// metrics.
func Setup(level, kubeconfig string) (*slog.Logger, *rest.Config, *prometheus.Registry, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, nil, fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	klog.SetSlogLogger(log) // leader election, reflectors
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("client configuration: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return log, cfg, reg, nil
}

// Run runs until SIGINT or SIGTERM ends the context.
func Run(run func(context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx)
}

// Fail prints err for the named command and exits 1.
func Fail(name string, err error) {
	fmt.Fprintln(os.Stderr, name+":", err)
	os.Exit(1)
}

// Float32 parses a flag value into p, for flag.Func (client-go's QPS is a float32).
func Float32(p *float32) func(string) error {
	return func(s string) error {
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		*p = float32(f)
		return nil
	}
}
