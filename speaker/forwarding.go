package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/ironlb/ironlb/forward"
	"github.com/ironlb/ironlb/forward/health"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Forwarding modes (--forwarding).
const (
	ForwardingAuto = "auto" // on, unless kube-proxy's rules are on the node
	ForwardingOn   = "on"
	ForwardingOff  = "off"
)

// detectInterval is how often --forwarding=auto looks for kube-proxy's rules again (at the
// next sync after it passed; the speaker syncs at least every Config.Resync).
const detectInterval = 10 * time.Second

// forwarder keeps ironlb's nftables table in line with the Services and EndpointSlices while
// ironlb is the one forwarding on this node, and removes the table when it stops being so: with
// --forwarding=auto it looks for kube-proxy's rules again every detectInterval, removes its
// table when they appear and takes over again (a full sync) when they go. A table nobody updates
// would DNAT to endpoints of the past, whose addresses later pods reuse.
//
// It keeps the table when the speaker stops: across a restart or a rolling update, traffic
// keeps flowing on the old rules until the next speaker replaces them in one transaction
// (kube-proxy also leaves its rules when it exits).
type forwarder struct {
	mode       string
	applier    *forward.Applier
	opts       forward.Options
	log        *slog.Logger
	metrics    *forwardMetrics
	detect     func(context.Context) (forward.Detection, error)
	now        func() time.Time
	active     bool      // ironlb's table forwards on this node
	decided    bool      // active was set once
	nextDetect time.Time // auto: when to look for kube-proxy again
	health     *health.Server
	inSync     atomic.Bool // the last sync succeeded: health checks answer "serviceProxyHealthy"
	healthErr  string      // the last health check error logged
	conntrack  forward.ConntrackCleaner
	slicesSeen map[types.UID]string // resourceVersion of each EndpointSlice at the last sync; nil before the first
}

// newForwarder checks the mode and returns nil for off, after removing a table an earlier run
// left. For auto it looks for kube-proxy's rules once now: an error there is fatal, as at start
// nothing else tells whether this node may forward.
func newForwarder(ctx context.Context, mode string, opts forward.Options, log *slog.Logger, m *forwardMetrics) (*forwarder, error) {
	switch mode {
	case ForwardingOff, ForwardingAuto, ForwardingOn:
	default:
		return nil, fmt.Errorf("--forwarding=%q: want auto, on or off", mode)
	}
	nft, err := forward.NewInterface()
	if err != nil {
		if mode == ForwardingOff {
			log.Info("forwarding off (--forwarding=off); no nft to look for a table of an earlier run", "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return startForwarder(ctx, &forwarder{mode: mode, applier: forward.NewApplier(nft), opts: opts, log: log, metrics: m, detect: forward.Detect, now: time.Now})
}

// startForwarder applies f's mode for the first time.
func startForwarder(ctx context.Context, f *forwarder) (*forwarder, error) {
	log, mode := f.log, f.mode
	if mode != ForwardingOff {
		f.health = health.New(log, f.inSync.Load)
	}
	if mode == ForwardingOff {
		if err := f.applier.Remove(ctx); err != nil {
			return nil, err
		}
		log.Info("forwarding off (--forwarding=off); ironlb's nftables table removed if an earlier run left one")
		return nil, nil
	}
	if err := f.decide(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// decide turns forwarding on or off: on for mode on, and for auto unless kube-proxy's rules are
// on the node. Turning it off removes the table.
func (f *forwarder) decide(ctx context.Context) error {
	want, why := true, "mode "+f.mode
	if f.mode == ForwardingAuto {
		f.nextDetect = f.now().Add(detectInterval)
		d, err := f.detect(ctx)
		if err != nil {
			return fmt.Errorf("looking for kube-proxy's rules: %w", err)
		}
		want, why = !d.KubeProxy, d.String()
	}
	if f.decided && want == f.active {
		return nil
	}
	if want {
		f.log.Info("forwarding on: ironlb's nftables table forwards LoadBalancer, NodePort and ClusterIP traffic", "mode", f.mode, "why", why)
	} else {
		if err := f.applier.Remove(ctx); err != nil {
			f.nextDetect = time.Time{} // try again at the next sync, forwarding nothing meanwhile
			return err
		}
		f.health.Close() // kube-proxy serves them now
		f.inSync.Store(false)
		f.log.Info("forwarding off: kube-proxy forwards Services on this node (--forwarding=auto); ironlb's table removed", "found", why)
	}
	f.metrics.enabled.Set(float64(btoi(want)))
	f.metrics.kubeProxy.Set(float64(btoi(!want)))
	f.active, f.decided = want, true
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sync renders and applies; only what changed reaches the kernel. With --forwarding=auto it
// first looks for kube-proxy again when detectInterval has passed.
func (f *forwarder) sync(ctx context.Context, node forward.Node, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) error {
	if f.mode == ForwardingAuto && !f.now().Before(f.nextDetect) {
		if err := f.decide(ctx); err != nil {
			f.metrics.failures.Inc()
			return err
		}
	}
	if !f.active {
		return nil
	}
	in := forward.Input{Node: node, Services: svcs, EndpointSlices: slices, Options: f.opts}
	res, err := f.applier.Sync(ctx, forward.Render(in))
	f.inSync.Store(err == nil)
	if err != nil {
		f.metrics.failures.Inc()
		return fmt.Errorf("applying nftables rules: %w", err)
	}
	now := f.now()
	f.metrics.lastSync.Set(float64(now.UnixNano()) / 1e9)
	f.observeProgramming(slices, now)
	f.syncHealth(ctx, forward.HealthChecks(node.Name, svcs, slices))
	// After the rules: a UDP client whose entry goes now finds the new endpoints.
	if n, err := f.conntrack.Clean(forward.NewUDPTargets(in)); err != nil {
		f.log.Warn("conntrack cleanup", "err", err)
	} else if n > 0 {
		f.log.Debug("stale UDP conntrack entries deleted", "count", n)
	}
	if res.Operations > 0 {
		kind := "partial"
		if res.Full {
			kind = "full"
		}
		f.metrics.duration.WithLabelValues(kind).Observe(res.Duration.Seconds())
		f.metrics.rules.Set(float64(res.Stats.Rules))
		f.metrics.elements.Set(float64(res.Stats.Elements))
		f.log.Debug("nftables synced", "full", res.Full, "operations", res.Operations, "elapsed", res.Duration.Round(time.Microsecond))
	}
	return nil
}

// triggerTimeAnnotation is set by the EndpointSlice controller to the time of the last change
// (of a Pod or the Service) that it reflects.
const triggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"

// observeProgramming records, for each EndpointSlice changed since the last successful sync, the
// time from its trigger to now (the rules applied): kube-proxy's network programming latency.
// The first sync records nothing: its slices changed at any time before the speaker started.
func (f *forwarder) observeProgramming(slices []*discoveryv1.EndpointSlice, now time.Time) {
	seen := make(map[types.UID]string, len(slices))
	for _, s := range slices {
		if s == nil {
			continue
		}
		seen[s.UID] = s.ResourceVersion
		if f.slicesSeen == nil || f.slicesSeen[s.UID] == s.ResourceVersion {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, s.Annotations[triggerTimeAnnotation]); err == nil && !now.Before(t) {
			f.metrics.programming.Observe(now.Sub(t).Seconds())
		}
	}
	f.slicesSeen = seen
}

// podCIDRs returns the node's spec.podCIDRs (spec.podCIDR when the list is empty); invalid
// ones are skipped.
func podCIDRs(n *corev1.Node) []netip.Prefix {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// syncHealth serves the healthCheckNodePorts of this node's Services, logging an error once.
func (f *forwarder) syncHealth(ctx context.Context, hcs []health.Service) {
	err := f.health.Sync(ctx, hcs)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != f.healthErr && err != nil {
		f.log.Warn("health checks", "err", err)
	}
	f.healthErr = msg
}

type forwardMetrics struct {
	enabled, kubeProxy prometheus.Gauge
	duration           *prometheus.HistogramVec // by sync: full or partial
	lastSync           prometheus.Gauge
	programming        prometheus.Histogram
	rules, elements    prometheus.Gauge
	failures           prometheus.Counter
}

func newForwardMetrics(reg prometheus.Registerer) (*forwardMetrics, error) {
	m := &forwardMetrics{
		enabled:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_enabled", Help: "1 when ironlb's nftables rules forward Services on this node."}),
		kubeProxy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_kube_proxy_detected", Help: "1 when --forwarding=auto found kube-proxy's rules and left forwarding off."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ironlb_speaker_forwarding_sync_duration_seconds",
			Help:    "Time to apply a change of the nftables table, by sync: full (the whole table) or partial (the elements that changed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"sync"}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_last_sync_timestamp_seconds", Help: "When the nftables table was last synced successfully (Unix time)."}),
		programming: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ironlb_speaker_forwarding_network_programming_duration_seconds",
			Help:    "Time from an EndpointSlice change's trigger (its endpoints.kubernetes.io/last-change-trigger-time) to the rules applied.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 15)}),
		rules:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_rules", Help: "Rules in ironlb's nftables table."}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_forwarding_elements", Help: "Set and map elements in ironlb's nftables table."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ironlb_speaker_forwarding_sync_failures_total", Help: "nftables transactions and kube-proxy detections that failed."}),
	}
	for _, c := range []prometheus.Collector{m.enabled, m.kubeProxy, m.duration, m.lastSync, m.programming, m.rules, m.elements, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
