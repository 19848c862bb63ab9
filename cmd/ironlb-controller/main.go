// Command ironlb-controller allocates external IPs from IPPools to LoadBalancer Services.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironlb/ironlb/controller"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	cfg := controller.DefaultConfig()
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	flag.StringVar(&cfg.Class.Name, "load-balancer-class", cfg.Class.Name, "the spec.loadBalancerClass ironlb handles")
	flag.BoolVar(&cfg.Class.Only, "only-load-balancer-class", false, "handle only Services of -load-balancer-class, not those without a class")
	flag.StringVar(&cfg.Namespace, "namespace", envOr("POD_NAMESPACE", cfg.Namespace), "namespace of the leader-election Lease")
	flag.StringVar(&cfg.LeaseName, "lease-name", cfg.LeaseName, "name of the leader-election Lease")
	flag.StringVar(&cfg.Identity, "identity", envOr("POD_NAME", cfg.Identity), "this replica's identity in the Lease")
	flag.DurationVar(&cfg.LeaseDuration, "lease-duration", cfg.LeaseDuration, "how long a dead leader holds the Lease")
	flag.DurationVar(&cfg.RenewDeadline, "renew-deadline", cfg.RenewDeadline, "how long the leader retries renewing before stepping down")
	flag.DurationVar(&cfg.RetryPeriod, "retry-period", cfg.RetryPeriod, "pace of leader-election attempts")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address for /metrics, /healthz and /readyz (empty: off)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail(fmt.Errorf("-log-level: %w", err))
	}
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	klog.SetSlogLogger(cfg.Log) // client-go's own logs (leader election, reflectors) as JSON too
	restCfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail(fmt.Errorf("client configuration: %w", err))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := controller.New(cfg, restCfg, reg, reg)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fail(err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ironlb-controller:", err)
	os.Exit(1)
}
