package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/bgp"
	"github.com/ironlb/ironlb/internal/owned"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// bgpRunner owns the embedded GoBGP speaker. It starts GoBGP when the first BGPPeer selects
// this node (GoBGP needs the router ID and ASN at start), restarts it when they change, and
// keeps it until the speaker stops. When GoBGP cannot start, each session's BGPSessionState
// says why.
type bgpRunner struct {
	node    string
	log     *slog.Logger
	kube    kubernetes.Interface
	crd     rest.Interface
	metrics *bgpMetrics

	mu      sync.Mutex
	speaker *bgp.Speaker
	done    chan error
	cancel  context.CancelFunc
	states  *owned.Reconciler[*v1alpha1.BGPSessionState]
	secrets *secretCache // password Secrets, read off the data path

	running  bgp.Config // what GoBGP was started with, while speaker is set
	startErr string     // why GoBGP is not running although peers select this node
	failed   bgp.Config // the configuration that failed, not retried until it changes
	idle     []bgp.Peer // the sessions reported with startErr
	// The paths last given to GoBGP without error, and which GoBGP: a sync whose target has
	// the same paths (an unchanged BGP plan) gives them again to no one.
	applied []*BGPPath
	pathsOf *bgp.Speaker
}

// apply configures sessions and paths from the plan; self is this node's addresses (IPv4
// first), for the router ID and cross-family next hops.
func (r *bgpRunner) apply(ctx context.Context, p *BGPTarget, self []netip.Addr) {
	r.reap()
	if len(p.Peers) == 0 && r.speaker == nil {
		r.startErr, r.idle = "", nil
		return
	}
	var peers []bgp.Peer
	wanted := map[string]bool{}
	for _, bp := range p.Peers {
		peers = append(peers, r.peer(bp))
		if ref := bp.Spec.PasswordSecretRef; ref != nil {
			wanted[ref.Namespace+"/"+ref.Name] = true
		}
	}
	r.secrets.keep(wanted)
	if len(p.Peers) > 0 {
		cfg := r.config(p.Peers, self)
		if r.speaker != nil && (cfg.RouterID != r.running.RouterID || cfg.ASN != r.running.ASN) {
			r.log.Info("BGP router ID or ASN changed: restarting BGP (every session resets)",
				"routerID", cfg.RouterID, "asn", cfg.ASN, "was", r.running.RouterID, "wasASN", r.running.ASN)
			r.stopSpeaker()
		}
		if r.speaker == nil {
			err := cfg.Validate()
			if err == nil && r.startErr != "" && sameStart(cfg, r.failed) {
				return // failed as it is; retried when the configuration changes
			}
			if err != nil {
				r.notStarted(cfg, peers, err)
				return
			}
			r.start(cfg)
		}
	}
	r.startErr, r.idle = "", nil
	if err := r.speaker.SetPeers(peers); err != nil {
		r.log.Warn("configuring BGP sessions", "err", err)
	}
	if r.pathsOf == r.speaker && samePaths(r.applied, p.Paths) {
		return // the same plan's paths (a target's Paths never change), given to this GoBGP
	}
	paths := make([]bgp.Path, 0, len(p.Paths))
	for _, bp := range p.Paths {
		paths = append(paths, bgp.Path{Prefix: bp.Prefix, Peers: bp.Peers, Communities: bp.Communities,
			LargeCommunities: bp.LargeCommunities, LocalPref: bp.LocalPref})
	}
	r.pathsOf, r.applied = nil, nil
	if err := r.speaker.SetPaths(paths); err != nil {
		r.log.Warn("announcing BGP paths", "err", err)
	} else {
		r.pathsOf, r.applied = r.speaker, p.Paths
	}
	r.metrics.paths.Set(float64(len(paths)))
}

// samePaths reports whether a and b are the same slice (not merely equal ones).
func samePaths(a, b []*BGPPath) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// config is GoBGP's configuration for the peers that select this node: the ASN of the first
// peer by name, the router ID of the first that sets one, else this node's first IPv4 address.
func (r *bgpRunner) config(peers []*v1alpha1.BGPPeer, self []netip.Addr) bgp.Config {
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b *v1alpha1.BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	cfg := bgp.DefaultConfig()
	cfg.Log = r.log
	cfg.ASN = peers[0].Spec.MyASN
	for _, a := range self {
		switch {
		case a.Is4() && !cfg.NextHopIPv4.IsValid():
			cfg.NextHopIPv4, cfg.RouterID = a, a
		case a.Is6() && !cfg.NextHopIPv6.IsValid():
			cfg.NextHopIPv6 = a
		}
	}
	for _, p := range peers {
		if id, err := netip.ParseAddr(p.Spec.RouterID); err == nil {
			cfg.RouterID = id // an explicit router ID wins; GoBGP has one per node
			break
		}
	}
	return cfg
}

func sameStart(a, b bgp.Config) bool {
	return a.RouterID == b.RouterID && a.ASN == b.ASN && a.NextHopIPv4 == b.NextHopIPv4 && a.NextHopIPv6 == b.NextHopIPv6
}

// notStarted records why GoBGP does not run; report writes it into each session's state.
func (r *bgpRunner) notStarted(cfg bgp.Config, peers []bgp.Peer, err error) {
	msg := fmt.Sprintf("BGP is not running on node %s: %v", r.node, err)
	if !cfg.RouterID.Is4() {
		msg += " (a node without an IPv4 address needs spec.routerID on its BGPPeers)"
	}
	if msg != r.startErr {
		r.log.Warn("BGP not started", "err", err)
	}
	r.startErr, r.failed, r.idle = msg, cfg, peers
}

func (r *bgpRunner) start(cfg bgp.Config) {
	s := bgp.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r.mu.Lock()
	r.speaker, r.cancel, r.done, r.running = s, cancel, done, cfg
	r.mu.Unlock()
	r.log.Info("BGP started", "routerID", cfg.RouterID, "asn", cfg.ASN)
}

// reap notices a GoBGP that stopped by itself (it failed to start) and records why.
func (r *bgpRunner) reap() {
	if r.speaker == nil {
		return
	}
	select {
	case err := <-r.done:
		if err == nil {
			err = errors.New("stopped")
		}
		peers := make([]bgp.Peer, 0)
		for _, ss := range r.speaker.Sessions() {
			peers = append(peers, bgp.Peer{Name: ss.Peer, Address: ss.Address})
		}
		cfg := r.running
		r.mu.Lock()
		r.speaker, r.done = nil, nil
		r.mu.Unlock()
		r.cancel()
		r.notStarted(cfg, peers, err)
	default:
	}
}

// stopSpeaker withdraws every path, closes the sessions and stops GoBGP.
func (r *bgpRunner) stopSpeaker() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil || done == nil {
		return
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		r.log.Warn("BGP shutdown", "err", err)
	}
	r.log.Info("BGP paths withdrawn and sessions closed", "elapsed", time.Since(start).Round(time.Millisecond))
	r.mu.Lock()
	r.speaker, r.done = nil, nil
	r.mu.Unlock()
}

// peer translates a BGPPeer, with its password Secret as last read (secretCache: never a
// request here). A Secret that could not be read makes the session unconfigured, with the
// reason as its error: never a session without the password the operator asked for.
func (r *bgpRunner) peer(bp *v1alpha1.BGPPeer) bgp.Peer {
	spec := bp.Spec
	p := bgp.Peer{Name: bp.Name, PeerASN: spec.PeerASN, LocalASN: spec.MyASN, Port: uint16(spec.PeerPort)}
	var err error
	if p.Address, err = netip.ParseAddr(spec.PeerAddress); err != nil {
		p.ConfigError = fmt.Sprintf("peerAddress %q: %v", spec.PeerAddress, err)
	}
	if spec.SourceAddress != "" {
		if p.SourceAddress, err = netip.ParseAddr(spec.SourceAddress); err != nil {
			p.ConfigError = fmt.Sprintf("sourceAddress %q: %v", spec.SourceAddress, err)
		}
	}
	if spec.HoldTime != nil {
		p.HoldTime = spec.HoldTime.Duration
		if p.HoldTime == 0 {
			p.ConfigError = "holdTime 0s (no hold timer) is not supported by the embedded GoBGP v3; use 3s or more"
		}
	}
	if spec.KeepaliveTime != nil {
		p.KeepaliveTime = spec.KeepaliveTime.Duration
	}
	if spec.EBGPMultiHop != nil {
		p.EBGPMultiHop = uint8(*spec.EBGPMultiHop)
	}
	if gr := spec.GracefulRestart; gr != nil && gr.Enabled {
		p.GracefulRestart = true
		if gr.RestartTime != nil {
			p.RestartTime = gr.RestartTime.Duration
		}
	}
	if ref := spec.PasswordSecretRef; ref != nil {
		key := ref.Key
		if key == "" {
			key = "password"
		}
		data, err := r.secrets.get(ref.Namespace, ref.Name)
		switch {
		case err != nil:
			p.ConfigError = fmt.Sprintf("password Secret %s/%s: %v", ref.Namespace, ref.Name, err)
		case len(data[key]) == 0:
			p.ConfigError = fmt.Sprintf("password Secret %s/%s has no key %q", ref.Namespace, ref.Name, key)
		default:
			p.Password = string(data[key])
		}
	}
	return p
}

// changes signals session changes; nil (blocks forever) before BGP started.
func (r *bgpRunner) changes() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.speaker == nil {
		return nil
	}
	return r.speaker.Changes()
}

// report sets the session metrics and the desired BGPSessionStates, one per session of this
// node (written by r.states, off the data path).
func (r *bgpRunner) report() {
	r.mu.Lock()
	s := r.speaker
	r.mu.Unlock()
	var sessions []bgp.SessionState
	if s != nil {
		sessions = s.Sessions()
	}
	for _, p := range r.idle {
		sessions = append(sessions, bgp.SessionState{Peer: p.Name, Address: p.Address, State: bgp.StateIdle, LastError: r.startErr})
	}
	var desired []*v1alpha1.BGPSessionState
	r.metrics.up.Reset()
	for _, ss := range sessions {
		up := 0.0
		if ss.State == bgp.StateEstablished {
			up = 1
		}
		r.metrics.up.WithLabelValues(ss.Peer).Set(up)
		r.metrics.sent.WithLabelValues(ss.Peer).Set(float64(ss.PrefixesSent))
		obj := &v1alpha1.BGPSessionState{
			ObjectMeta: metav1.ObjectMeta{Name: sessionStateName(r.node, ss.Peer), Labels: map[string]string{LabelNode: r.node}},
			NodeName:   r.node, PeerName: ss.Peer, PeerAddress: ss.Address.String(), State: v1alpha1.BGPState(ss.State),
			LastError: truncate(ss.LastError, v1alpha1.MaxBGPErrorLength), PrefixesSent: int64(ss.PrefixesSent), PrefixesReceived: int64(ss.PrefixesReceived),
		}
		if ss.LocalAddress.IsValid() {
			obj.LocalAddress = ss.LocalAddress.String()
		}
		if !ss.EstablishedSince.IsZero() {
			obj.EstablishedSince = &metav1.Time{Time: ss.EstablishedSince}
		}
		if !ss.LastErrorTime.IsZero() {
			obj.LastErrorTime = &metav1.Time{Time: ss.LastErrorTime}
		}
		desired = append(desired, obj)
	}
	r.states.Set(desired)
}

func sameSession(a, b *v1alpha1.BGPSessionState) bool {
	return a.PeerAddress == b.PeerAddress && a.State == b.State && a.LastError == b.LastError &&
		a.LocalAddress == b.LocalAddress && a.PrefixesSent == b.PrefixesSent && a.PrefixesReceived == b.PrefixesReceived &&
		a.EstablishedSince.Equal(b.EstablishedSince)
}

// stop withdraws every path and closes the sessions (bgp.Speaker.Run's shutdown); no
// BGPSessionStates are desired any more.
func (r *bgpRunner) stop() {
	r.stopSpeaker()
	r.startErr, r.idle = "", nil
	r.report()
}

type bgpMetrics struct {
	up, sent *prometheus.GaugeVec
	paths    prometheus.Gauge
}

func newBGPMetrics(reg prometheus.Registerer) (*bgpMetrics, error) {
	m := &bgpMetrics{
		up:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ironlb_speaker_bgp_session_up", Help: "1 while the BGP session with the peer is Established."}, []string{"peer"}),
		sent:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ironlb_speaker_bgp_prefixes_sent", Help: "Prefixes advertised on the session."}, []string{"peer"}),
		paths: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_speaker_bgp_paths", Help: "Prefixes this node announces over BGP."}),
	}
	for _, c := range []prometheus.Collector{m.up, m.sent, m.paths} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
