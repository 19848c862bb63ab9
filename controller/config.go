package controller

import (
	"log/slog"
	"os"
	"time"
)

// Config is the controller's configuration. DefaultConfig gives every value with its reason.
type Config struct {
	// Class selects the Services handled, by spec.loadBalancerClass.
	Class Class
	// Namespace holds the leader-election Lease (the namespace ironlb runs in).
	Namespace string
	// LeaseName names the Lease; controllers with the same name elect one leader.
	LeaseName string
	// Identity is this replica's name in the Lease; default the host name (the pod name).
	Identity string
	// LeaseDuration is how long a leader that stopped renewing (a killed process, a partition)
	// holds the Lease before another replica takes over. Shorter fails over faster and costs
	// more API writes. RenewDeadline is how long the leader retries renewing before it gives up
	// leadership; RetryPeriod is the pace of attempts. client-go requires
	// LeaseDuration > RenewDeadline > RetryPeriod.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// ReleaseOnCancel hands the Lease over at once when the controller stops (a rolling
	// upgrade), after its worker has stopped, so two allocators never overlap.
	ReleaseOnCancel bool
	// PoolStatusDelay batches pool status writes after Service changes: 5,000 allocations in a
	// row write each pool's status a few times, not 5,000 times.
	PoolStatusDelay time.Duration
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddr string
	// Log receives structured logs; default slog.Default().
	Log *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Class:     Class{Name: "ironlb.io/ironlb"},
		Namespace: "ironlb-system",
		LeaseName: "ironlb-controller",
		Identity:  host,
		// client-go's usual values (kube-controller-manager's): a killed leader is replaced
		// within 15 s; a live one renews every 2 s.
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		PoolStatusDelay: 200 * time.Millisecond,
		MetricsAddr:     ":7472",
	}
}
