package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
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

// Syncs of EndpointSlice changes (see forwarder.run).
const (
	// minSyncInterval batches EndpointSlice changes: a sync starts at most this long after the
	// previous one, with every change that came meanwhile (kube-proxy's minSyncPeriod, 1 s by
	// default). Each sync costs an nft run (tens of ms of CPU with 10,000 Services) whatever
	// the number of changes in it, so under a steady flow of changes this bounds the CPU spent,
	// and a change waits for at most this long.
	minSyncInterval = 500 * time.Millisecond
	// scanInterval is how often the speaker's sync compares every Service and EndpointSlice of
	// its caches with what was rendered (an object each, by identity): a change the event
	// handlers missed is rendered then. Only what differs is rendered.
	scanInterval = time.Minute
	// fullSyncInterval is how often the whole table is written again from what was rendered
	// (nothing is rendered for it), in case something changed the table behind ironlb's back
	// (kube-proxy's full sync period is an hour too).
	fullSyncInterval = time.Hour
)

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
	mu         sync.Mutex // held by a sync: the speaker's, or run's
	mode       string
	renderer   *forward.Renderer
	tracker    *changeTracker // nil in tests that pass every object to sync
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
	slicesSeen map[types.UID]string // without a tracker: resourceVersion of each EndpointSlice at the last sync; nil before the first
	synced     bool                 // a sync was applied
	applied    *forward.Ruleset     // the Ruleset last applied; nil after a failure
	nextScan   time.Time            // with a tracker: when sync compares every object again
	nextFull   time.Time            // when the whole table is written again
	lastSync   time.Time            // when run's last sync started
}

// newForwarder checks the mode and returns nil for off, after removing a table an earlier run
// left. For auto it looks for kube-proxy's rules once now: an error there is fatal, as at start
// nothing else tells whether this node may forward. tracker follows the Services and
// EndpointSlices (newChangeTracker; nil only for off); nothing waits here for it to sync.
func newForwarder(ctx context.Context, mode string, opts forward.Options, log *slog.Logger, m *forwardMetrics, tracker *changeTracker) (*forwarder, error) {
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
	f, err := startForwarder(ctx, &forwarder{mode: mode, applier: forward.NewApplier(nft), tracker: tracker, opts: opts, log: log, metrics: m, detect: forward.Detect, now: time.Now})
	if f == nil || err != nil {
		return f, err
	}
	go f.run(ctx)
	return f, nil
}

// startForwarder applies f's mode for the first time.
func startForwarder(ctx context.Context, f *forwarder) (*forwarder, error) {
	log, mode := f.log, f.mode
	f.renderer = forward.NewRenderer()
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
		f.applied = nil
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

// sync brings the rules in line with the speaker's caches before it announces: the node, and
// the Services (a new LoadBalancer IP must find its rules in place). EndpointSlice changes are
// run's, batched, and every scanInterval sync compares every object with what was rendered.
// Only what changed is rendered, and only what changed in the rules reaches the kernel. Without
// a tracker (tests), every call compares every object. With --forwarding=auto it first looks
// for kube-proxy again when detectInterval has passed.
func (f *forwarder) sync(ctx context.Context, node forward.Node, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	wasActive := f.active
	if f.mode == ForwardingAuto && !now.Before(f.nextDetect) {
		if err := f.decide(ctx); err != nil {
			f.metrics.failures.Inc()
			return err
		}
	}
	f.renderer.SetNode(node, f.opts)
	var changed []*discoveryv1.EndpointSlice
	switch {
	case f.tracker == nil:
		changed = f.changedSlices(slices)
		f.renderer.Render(forward.Input{Node: node, Services: svcs, EndpointSlices: slices, Options: f.opts})
	default:
		// The objects come from the tracker and the informer's store, never from svcs and
		// slices: run may have applied newer ones than those since they were listed.
		scan := !now.Before(f.nextScan)
		if scan {
			f.nextScan = now.Add(scanInterval)
			for _, key := range f.renderer.Services() {
				f.renderer.SetService(key, f.tracker.service(key), f.tracker.slicesOf(key))
			}
		}
		for _, svc := range svcs {
			key := svc.Namespace + "/" + svc.Name
			if scan || !forward.SameService(f.renderer.Rendered(key), svc) {
				f.renderer.SetService(key, f.tracker.service(key), f.tracker.slicesOf(key))
			}
		}
	}
	if f.active && (f.renderer.Ruleset() != f.applied || !wasActive || !now.Before(f.nextFull)) {
		return f.apply(ctx, changed)
	}
	return nil
}

// run syncs the changes the tracker reports, at most one sync per minSyncInterval, until ctx
// ends.
func (f *forwarder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.tracker.changed:
		}
		if wait := f.lastSync.Add(minSyncInterval).Sub(f.now()); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		f.lastSync = f.now()
		f.syncChanges(ctx)
	}
}

// remove deletes the table for good (the speaker is uninstalled): no sync writes it again.
func (f *forwarder) remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active, f.mode = false, ForwardingOff
	return f.applier.Remove(ctx)
}

// syncChanges renders and applies the Services the tracker marked, once the speaker's sync
// has applied everything once.
func (f *forwarder) syncChanges(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.synced || ctx.Err() != nil {
		return // the first sync is the speaker's: it knows the node
	}
	keys, triggers := f.tracker.take()
	for _, key := range keys {
		f.renderer.SetService(key, f.tracker.service(key), f.tracker.slicesOf(key))
	}
	if !f.active || f.renderer.Ruleset() == f.applied {
		return
	}
	if err := f.apply(ctx, nil); err != nil {
		f.log.Warn("forwarding", "err", err)
		f.tracker.retry(keys, triggers)
		return
	}
	now := f.now()
	for _, t := range triggers {
		if !now.Before(t) {
			f.metrics.programming.Observe(now.Sub(t).Seconds())
		}
	}
}

// apply renders what is pending and applies the rules; the health checks and the UDP conntrack
// cleanup follow. changed are the EndpointSlices whose network programming latency to observe
// (without a tracker).
func (f *forwarder) apply(ctx context.Context, changed []*discoveryv1.EndpointSlice) error {
	now := f.now()
	if !now.Before(f.nextFull) {
		f.applier.Invalidate()
	}
	rs := f.renderer.Ruleset()
	res, err := f.applier.Sync(ctx, rs)
	f.inSync.Store(err == nil)
	if err != nil {
		f.applied = nil
		f.metrics.failures.Inc()
		return fmt.Errorf("applying nftables rules: %w", err)
	}
	f.applied = rs
	now = f.now()
	if res.Full {
		f.nextFull = now.Add(fullSyncInterval)
		// The transaction's text (the whole table) is garbage now, and the Go runtime would
		// keep its pages for minutes: give them back at once, off this path (it is a garbage
		// collection). Full syncs are rare (the first, one an hour, after a failure or
		// kube-proxy's leaving).
		go debug.FreeOSMemory()
	}
	f.metrics.lastSync.Set(float64(now.UnixNano()) / 1e9)
	if !f.synced {
		f.log.Info("nftables table written", "services", len(f.renderer.Services()), "elements", res.Stats.Elements,
			"elapsed", res.Duration.Round(time.Millisecond))
	}
	if f.synced {
		f.observeProgramming(changed, now)
	}
	if !f.synced && f.tracker != nil {
		f.tracker.dropTriggers() // the first sync's slices changed any time before the start
	}
	f.synced = true
	f.syncHealth(ctx, f.renderer.HealthChecks())
	// After the rules: a UDP client whose entry goes now finds the new endpoints.
	if n, err := f.conntrack.Clean(f.renderer.UDPTargets()); err != nil {
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
		f.log.Debug("nftables synced", "full", res.Full, "operations", res.Operations, "rendered", f.renderer.LastRendered(),
			"elapsed", res.Duration.Round(time.Microsecond))
	}
	return nil
}

// triggerTimeAnnotation is set by the EndpointSlice controller to the time of the last change
// (of a Pod or the Service) that it reflects.
const triggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"

// changedSlices returns the EndpointSlices that changed since the previous call (by
// resourceVersion), all of them at the first.
func (f *forwarder) changedSlices(slices []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	seen := make(map[types.UID]string, len(slices))
	var out []*discoveryv1.EndpointSlice
	for _, s := range slices {
		if s == nil {
			continue
		}
		seen[s.UID] = s.ResourceVersion
		if f.slicesSeen[s.UID] != s.ResourceVersion {
			out = append(out, s)
		}
	}
	f.slicesSeen = seen
	return out
}

// observeProgramming records, for each changed EndpointSlice, the time from its trigger to now
// (the rules applied): kube-proxy's network programming latency.
func (f *forwarder) observeProgramming(changed []*discoveryv1.EndpointSlice, now time.Time) {
	for _, s := range changed {
		if t, ok := triggerTime(s); ok && !now.Before(t) {
			f.metrics.programming.Observe(now.Sub(t).Seconds())
		}
	}
}

func triggerTime(s *discoveryv1.EndpointSlice) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s.Annotations[triggerTimeAnnotation])
	return t, err == nil
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
