// Command ironlb-controller allocates external IPs from IPPools to LoadBalancer Services.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ironlb/ironlb/controller"
	"github.com/ironlb/ironlb/internal/cmdutil"
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
	flag.IntVar(&cfg.Workers, "workers", cfg.Workers, "Services reconciled in parallel (decisions stay serial; status writes overlap)")
	flag.Func("kube-api-qps", fmt.Sprintf("sustained requests per second to the API server, status writes included; negative: no client-side limit (default %g)", cfg.API.QPS), cmdutil.Float32(&cfg.API.QPS))
	flag.IntVar(&cfg.API.Burst, "kube-api-burst", cfg.API.Burst, "requests to the API server allowed at once above -kube-api-qps")
	flag.Func("events-qps", fmt.Sprintf("sustained event writes per second, on a client and queue of their own (default %g)", cfg.Events.QPS), cmdutil.Float32(&cfg.Events.QPS))
	flag.IntVar(&cfg.Events.Burst, "events-burst", cfg.Events.Burst, "event writes allowed at once above -events-qps")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	log, restCfg, reg, err := cmdutil.Setup(*logLevel, *kubeconfig)
	if err != nil {
		cmdutil.Fail("ironlb-controller", err)
	}
	cfg.Log = log
	c, err := controller.New(cfg, restCfg, reg, reg)
	if err != nil {
		cmdutil.Fail("ironlb-controller", err)
	}
	if err := cmdutil.Run(c.Run); err != nil {
		cmdutil.Fail("ironlb-controller", err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
