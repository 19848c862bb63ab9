package controller

import (
	"log/slog"
	"os"
	"time"

	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/internal/kubeclient"
)

// Config is the controller's configuration. DefaultConfig gives every value with its reason.
type Config struct {
	// Class selects the Services handled, by spec.loadBalancerClass.
	Class config.Class
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
	// Workers reconcile Services in parallel. Allocation decisions stay serial (one lock owns
	// the allocator); what runs in parallel is the status write, one API round trip per
	// Service, which a single worker could not do faster than the API server's latency allows.
	Workers int
	// API limits the requests to the API server (reads, status writes, pool status, the
	// Lease). Each allocation costs one status write; the limit bounds how fast a burst of
	// Services gets its addresses. The API server's flow control (the chart's FlowSchema) is
	// what protects other clients; this limit only stops a runaway loop.
	API kubeclient.Limits
	// Events limits event writes, through a client and a queue of their own: events never
	// hold back status writes. Under a burst beyond the queue (1,000 events) some Normal
	// events are dropped; repeats of one event are aggregated by client-go's correlator.
	Events kubeclient.Limits
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddr string
	// Log receives structured logs; default slog.Default().
	Log *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Class:     config.Class{Name: config.DefaultClassName},
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
		Workers:         8,
		API:             kubeclient.Limits{QPS: 500, Burst: 1000},
		Events:          kubeclient.Limits{QPS: 100, Burst: 200},
		MetricsAddr:     ":7472",
	}
}
