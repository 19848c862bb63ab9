package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus metrics, registered by whoever owns the registry.
type metrics struct {
	poolAddresses *prometheus.GaugeVec
	allocations   prometheus.Counter
	failures      *prometheus.CounterVec
	reconcile     prometheus.Histogram
	leader        prometheus.Gauge
	initialSync   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		poolAddresses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ironlb_pool_addresses",
			Help: "Addresses of an IPPool by family and state (total, assigned, available); IPv6 counts above 2^53 are rounded.",
		}, []string{"pool", "family", "state"}),
		allocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ironlb_allocations_total",
			Help: "Services that were given external addresses.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_allocation_failures_total",
			Help: "Allocation attempts that failed, by reason (NoPool, PoolExhausted, ...).",
		}, []string{"reason"}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ironlb_service_reconcile_duration_seconds",
			Help:    "Time to reconcile one Service, status write included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_controller_leader",
			Help: "1 while this replica is the leader and allocates.",
		}),
		initialSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_controller_initial_sync_seconds",
			Help: "Time from winning leadership until every Service that existed then was reconciled once, status written (0 until then).",
		}),
	}
	for _, c := range []prometheus.Collector{m.poolAddresses, m.allocations, m.failures, m.reconcile, m.leader, m.initialSync} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
