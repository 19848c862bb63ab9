package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ironlb/ironlb/internal/endpoint"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Run starts the informers, joins memberlist, and announces until ctx ends. On the way out it
// leaves memberlist first, so another node takes over at once.
func (s *Speaker) Run(ctx context.Context) error {
	start := time.Now()
	s.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.events.CoreV1().Events("")})
	defer s.broadcast.Shutdown()
	defer endpoint.Serve(s.cfg.MetricsAddr, s.gatherer, &s.ready, s.log)()
	// Forwarding's change tracker registers before the informers start, so it indexes each
	// Service and EndpointSlice as they are listed rather than being handed them all again
	// once they are.
	var tracker *changeTracker
	var err error
	if s.cfg.Forwarding != ForwardingOff {
		if tracker, err = newChangeTracker(s.factory); err != nil {
			return err
		}
	}
	forwarding, synced, stopInformers := s.startInformers(ctx)
	defer stopInformers()
	// kube-proxy's rules are looked for while the informers list.
	if s.fwd, err = newForwarder(ctx, s.cfg.Forwarding, s.cfg.ForwardOptions, s.log, s.fwdMetric, tracker); err != nil {
		return err
	}
	if s.fwd != nil {
		// Services work on this node as soon as the caches the rules read hold them, without
		// waiting for ironlb's configuration, the Leases or memberlist (which waits for peers
		// up to JoinTimeout).
		if !cache.WaitFor(ctx, "", slices.Concat(forwarding, tracker.synced)...) {
			return nil // ctx ended
		}
		s.log.Info("Services, EndpointSlices and Nodes listed", "elapsed", time.Since(start).Round(time.Millisecond))
		if err := s.fwd.sync(ctx, s.forwardNode(s.nodesOnly()), s.listServices(), nil); err != nil {
			s.log.Warn("forwarding", "err", err)
		}
	}
	if !cache.WaitFor(ctx, "", synced...) {
		return nil // ctx ended
	}
	if err := s.startMembers(ctx); err != nil {
		return err
	}
	annCtx, stopAnnouncer := context.WithCancel(context.WithoutCancel(ctx))
	annDone := make(chan error, 1)
	go func() { annDone <- s.announcer.Run(annCtx) }()
	// Status writers run until shutdown has set their last desired sets.
	statusCtx, stopStatus := context.WithCancel(context.WithoutCancel(ctx))
	var statusDone sync.WaitGroup
	statusDone.Go(func() { s.announcements.Run(statusCtx) })
	statusDone.Go(func() { s.bgp.states.Run(statusCtx) })
	stopWriters := func() { stopStatus(); statusDone.Wait() }
	go s.rejoin(ctx)
	go s.keys.run(ctx, s.members)
	go s.bgp.secrets.run(ctx)
	if s.leases != nil {
		go s.renewLease(ctx)
	}
	s.log.Info("speaker running")

	var prev Plan
	warned := warnings{}
	resync := time.NewTicker(s.cfg.Resync)
	defer resync.Stop()
	s.kick()
	for {
		select {
		case <-ctx.Done():
			s.shutdown(stopAnnouncer, annDone, stopWriters)
			return nil
		case <-s.trigger:
		case <-s.members.Changed():
		case <-resync.C:
			s.changes.setAll() // compare every Service, in case an event was missed
		case <-s.bgp.changes():
			s.bgp.report()
			continue
		}
		prev = s.sync(ctx, prev, warned)
		// Ready once the first plan is applied (addresses answered, paths handed to GoBGP), not
		// before: a rolling update moves on to the next node when this one is ready.
		s.ready.Store(true)
	}
}

// shutdown leaves memberlist first (the others take over at once), then stops answering and
// removes this node's status objects (within 3 s: an unreachable API server leaves them to the
// next start's prune), and the nftables table if the speaker's DaemonSet was deleted.
func (s *Speaker) shutdown(stopAnnouncer context.CancelFunc, annDone <-chan error, stopWriters func()) {
	start := time.Now()
	if err := s.members.Leave(time.Second); err != nil {
		s.log.Warn("leaving memberlist", "err", err)
	}
	s.log.Info("left memberlist", "elapsed", time.Since(start).Round(time.Millisecond))
	stopAnnouncer()
	<-annDone
	s.bgp.stop()
	stopWriters()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.announcements.Set(nil)
	if err := errors.Join(s.announcements.Flush(ctx), s.bgp.states.Flush(ctx), s.deleteLease(ctx)); err != nil {
		s.log.Warn("removing status objects on shutdown", "err", err)
	}
	if s.fwd != nil && s.removal.removed(ctx) {
		if err := s.fwd.remove(ctx); err != nil {
			s.log.Error("removing the nftables table of a speaker uninstalled", "err", err)
			return
		}
		s.log.Info("nftables table removed: this speaker's DaemonSet is deleted")
	}
}

func (s *Speaker) startMembers(ctx context.Context) error {
	self, err := s.factory.Core().V1().Nodes().Lister().Get(s.cfg.NodeName)
	if err != nil {
		return fmt.Errorf("this node %s: %w", s.cfg.NodeName, err)
	}
	mcfg := s.cfg.Members
	mcfg.NodeName = s.cfg.NodeName
	if mcfg.Log == nil {
		mcfg.Log = s.log
	}
	if !mcfg.BindAddr.IsValid() {
		addrs := nodeAddrs(self)
		if len(addrs) == 0 {
			return fmt.Errorf("node %s has no InternalIP to run memberlist on", s.cfg.NodeName)
		}
		mcfg.BindAddr = addrs[0]
	}
	if len(mcfg.SecretKey) == 0 {
		s.log.Warn("memberlist gossip is not encrypted: no key configured")
	}
	s.members = l2.NewMembers(mcfg)
	if err := s.members.Start(); err != nil {
		return err
	}
	// Join before planning: alone, this node would see every other node as dead.
	deadline := time.Now().Add(s.cfg.JoinTimeout)
	for {
		peers := s.peerAddrs()
		n, err := s.members.Join(peers)
		if len(peers) == 0 || n > 0 || len(s.members.Alive()) > 1 {
			s.log.Info("joined memberlist", "peers", len(peers), "alive", len(s.members.Alive()))
			return nil
		}
		if time.Now().After(deadline) {
			s.log.Warn("no other member reachable; planning alone", "peers", len(peers), "err", err)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// peerAddrs returns the other nodes' memberlist addresses (their first InternalIP).
func (s *Speaker) peerAddrs() []netip.Addr {
	nodes, _ := s.factory.Core().V1().Nodes().Lister().List(labels.Everything())
	var out []netip.Addr
	for _, n := range nodes {
		if a := nodeAddrs(n); n.Name != s.cfg.NodeName && len(a) > 0 {
			out = append(out, a[0])
		}
	}
	return out
}

// nodeAddrs returns a node's InternalIPs, IPv4 first.
func nodeAddrs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip)
		}
	}
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		switch {
		case a.Is4() == b.Is4():
			return 0
		case a.Is4():
			return -1
		}
		return 1
	})
	return out
}

// rejoin contacts, every RejoinInterval, the nodes memberlist does not list: new nodes, and
// nodes declared dead that came back (after a partition neither side probes the other).
func (s *Speaker) rejoin(ctx context.Context) {
	t := time.NewTicker(s.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.members.Join(s.peerAddrs()); n > 0 {
			s.log.Info("rejoined members", "count", n)
		} else if err != nil {
			s.log.Debug("joining members", "err", err)
		}
	}
}
