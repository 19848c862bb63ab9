package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ironlb/ironlb/forward"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Forwarding modes (--forwarding).
const (
	ForwardingAuto = "auto" // on, unless kube-proxy's rules are on the node
	ForwardingOn   = "on"
	ForwardingOff  = "off"
)

// forwarder keeps ironlb's nftables table in line with the Services and EndpointSlices. It
// never removes the table: across a speaker restart traffic keeps flowing on the old rules,
// and the next start replaces them in one transaction.
type forwarder struct {
	applier *forward.Applier
	opts    forward.Options
	log     *slog.Logger
	metrics *forwardMetrics
}

// newForwarder decides, per mode, whether this node forwards, and returns nil when it does not.
func newForwarder(ctx context.Context, mode string, opts forward.Options, log *slog.Logger, m *forwardMetrics) (*forwarder, error) {
	switch mode {
	case ForwardingOff:
		log.Info("forwarding off (--forwarding=off)")
		return nil, nil
	case ForwardingAuto:
		d, err := forward.Detect(ctx)
		if err != nil {
			return nil, fmt.Errorf("looking for kube-proxy's rules: %w", err)
		}
		if d.KubeProxy {
			m.kubeProxy.Set(1)
			log.Info("forwarding off: kube-proxy forwards Services on this node (--forwarding=auto)", "found", d.Found)
			return nil, nil
		}
	case ForwardingOn:
	default:
		return nil, fmt.Errorf("--forwarding=%q: want auto, on or off", mode)
	}
	nft, err := forward.NewInterface()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	m.enabled.Set(1)
	log.Info("forwarding on: ironlb's nftables table forwards LoadBalancer, NodePort and ClusterIP traffic", "mode", mode)
	return &forwarder{applier: forward.NewApplier(nft), opts: opts, log: log, metrics: m}, nil
}

// sync renders and applies; only what changed reaches the kernel.
func (f *forwarder) sync(ctx context.Context, node forward.Node, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) error {
	rs := forward.Render(forward.Input{Node: node, Services: svcs, EndpointSlices: slices, Options: f.opts})
	res, err := f.applier.Sync(ctx, rs)
	if err != nil {
		f.metrics.failures.Inc()
		return fmt.Errorf("applying nftables rules: %w", err)
	}
	if res.Operations > 0 {
		f.metrics.duration.Observe(res.Duration.Seconds())
		f.metrics.rules.Set(float64(res.Stats.Rules))
		f.metrics.elements.Set(float64(res.Stats.Elements))
		f.log.Debug("nftables synced", "full", res.Full, "operations", res.Operations, "elapsed", res.Duration.Round(time.Microsecond))
	}
	return nil
}

type forwardMetrics struct {
	enabled, kubeProxy prometheus.Gauge
	duration           prometheus.Histogram
	rules, elements    prometheus.Gauge
	failures           prometheus.Counter
}

func newForwardMetrics(reg prometheus.Registerer) (*forwardMetrics, error) {
	m := &forwardMetrics{
		enabled:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_enabled", Help: "1 when ironlb's nftables rules forward Services on this node."}),
		kubeProxy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_kube_proxy_detected", Help: "1 when --forwarding=auto found kube-proxy's rules and left forwarding off."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ironlb_speaker_forwarding_sync_duration_seconds", Help: "Time to apply a change of the nftables table.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		rules:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_rules", Help: "Rules in ironlb's nftables table."}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_elements", Help: "Set and map elements in ironlb's nftables table."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ironlb_speaker_forwarding_sync_failures_total", Help: "nftables transactions that failed."}),
	}
	for _, c := range []prometheus.Collector{m.enabled, m.kubeProxy, m.duration, m.rules, m.elements, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
