package speaker

import (
	"bytes"
	"context"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/forward"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// sync plans from the caches and applies the difference to the previous plan.
func (s *Speaker) sync(ctx context.Context, prev Plan, warned warnings) Plan {
	start := time.Now()
	snap, err := s.snapshot(s.changes.take())
	if err != nil {
		s.changes.setAll()
		s.log.Warn("reading this node's interfaces", "err", err)
		return prev
	}
	if s.fwd != nil {
		// Forwarding first: an announced IP must find its rules in place. The Services that
		// did not change are rendered already (and their EndpointSlices are the tracker's).
		if err := s.fwd.sync(ctx, s.forwardNode(snap), snap.changedServices(), nil); err != nil {
			s.log.Warn("forwarding", "err", err)
			time.AfterFunc(time.Second, s.kick)
		}
	}
	plan := s.planning.Plan(snap)
	s.metrics.plan.Observe(time.Since(start).Seconds())
	for _, t := range plan.Targets {
		s.drivers[t.Mode()].apply(ctx, t, snap)
		s.reportAnnouncements(prev, t)
	}
	for _, w := range warned.fresh(plan.Warnings) {
		s.recorder.Event(warningObject(w), corev1.EventTypeWarning, w.Reason, w.Message)
		s.log.Warn(w.Message, "kind", w.Kind, "name", w.Name, "reason", w.Reason)
	}
	// Status objects: handed to their writers, never waited for; a plan and holds as before
	// change nothing.
	objs, held := s.status.announcements(s.cfg.NodeName, plan), s.announcer.Held()
	if len(objs) == 0 || len(s.lastStatus) == 0 || &objs[0] != &s.lastStatus[0] || len(objs) != len(s.lastStatus) || len(held) > 0 || s.lastHeld {
		s.announcements.Set(withHolds(objs, held))
		s.lastStatus, s.lastHeld = objs, len(held) > 0
	}
	s.log.Debug("plan applied", "elapsed", time.Since(start))
	return plan
}

// warnings remembers the warnings reported, so each is reported once while it lasts; one
// that went away and comes back is reported again.
type warnings map[Warning]bool

// fresh returns the warnings of ws not reported yet, and forgets the reported ones that are no
// longer in ws.
func (seen warnings) fresh(ws []Warning) []Warning {
	var out []Warning
	now := make(map[Warning]bool, len(ws))
	for _, w := range ws {
		now[w] = true
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	for w := range seen {
		if !now[w] {
			delete(seen, w)
		}
	}
	return out
}

// publishReach gives the other nodes this node's L2 reach and MACs (memberlist metadata, and
// the Lease for the nodes that have lost this one from memberlist), when they changed.
func (s *Speaker) publishReach(r Reach, macs []net.HardwareAddr) {
	meta, all := EncodeMeta(r, macs)
	if old := s.published.Load(); old != nil && bytes.Equal(meta, *old) {
		return
	}
	if !all {
		s.log.Warn("this node cannot answer for the addresses of too many pools to tell the others; some may stay dark", "pools", len(r))
	}
	if err := s.members.SetMeta(meta); err != nil {
		s.log.Warn("publishing this node's L2 reach", "err", err)
		return
	}
	s.published.Store(&meta)
	select {
	case s.metaChanged <- struct{}{}:
	default:
	}
	s.log.Info("published this node's L2 reach", "limited", len(r))
}

func warningObject(w Warning) runtime.Object {
	meta := metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}
	if w.Kind == "Service" {
		return &corev1.Service{ObjectMeta: meta}
	}
	return &v1alpha1.L2Advertisement{ObjectMeta: meta}
}

// forwardNode is this node as the forwarding rules see it: its name, InternalIPs, pod ranges and zone.
func (s *Speaker) forwardNode(snap *Snapshot) forward.Node {
	n := forward.Node{Name: s.cfg.NodeName}
	if self := nodeByName(snap.Nodes, s.cfg.NodeName); self != nil {
		n.Addresses = nodeAddrs(self)
		n.PodCIDRs = podCIDRs(self)
		n.Zone = self.Labels[corev1.LabelTopologyZone]
	}
	return n
}

// reportAnnouncements logs and records as events on the Services what this node starts or
// stops announcing in one mode: an event when a node takes an IP (an ownership move in L2).
func (s *Speaker) reportAnnouncements(prevPlan Plan, t Target) {
	var prevTarget Target
	var prev map[string]*Announced
	for _, p := range prevPlan.Targets {
		if p.Mode() == t.Mode() {
			prevTarget, prev = p, p.Announced()
		}
	}
	if prevTarget == t {
		return // the same target: nothing changed
	}
	mode, cur := string(t.Mode()), t.Announced()
	// The keys to compare: those t changed from prev, when it knows them; else every one.
	keys, gone, reportKeys := maps.Keys(cur), maps.Keys(prev), maps.Keys(t.Reported())
	if d, ok := t.(diffed); ok && prevTarget != nil {
		if base, changed := d.diff(); base == prevTarget {
			keys, gone, reportKeys = slices.Values(changed), slices.Values(changed), slices.Values(changed)
		}
	}
	for key := range keys {
		a := cur[key]
		if old := prev[key]; a == nil || old == a || old != nil && slices.Equal(old.IPs, a.IPs) {
			continue
		}
		if t.Mode() == v1alpha1.AnnouncementL2 {
			s.event(a, "node %s announces %s %s (%s)", s.cfg.NodeName, joinAddrs(a.IPs), t.Where(a), mode)
		}
		s.log.Info("announcing", "service", key, "mode", mode, "ip", joinAddrs(a.IPs), "where", t.Where(a))
	}
	for key := range gone {
		if a := prev[key]; a != nil && cur[key] == nil {
			s.log.Info("no longer announcing", "service", key, "mode", mode, "ip", joinAddrs(a.IPs))
		}
	}
	if t.Mode() != v1alpha1.AnnouncementBGP {
		return
	}
	// In BGP every eligible node announces: an event from each would be Services x nodes
	// writes (at 50 nodes and 5,000 Services, 250,000 at start, which starved the API server).
	// The node that reports a Service (one per Service) records which nodes announce it when
	// that changes.
	var prevReported map[string]*Announced
	if prevTarget != nil {
		prevReported = prevTarget.Reported()
	}
	reported := t.Reported()
	for key := range reportKeys {
		r, old := reported[key], prevReported[key]
		if r == nil || old == r || old != nil && slices.Equal(old.IPs, r.IPs) && slices.Equal(old.Nodes, r.Nodes) {
			continue
		}
		s.event(r, "nodes %v announce %s %s (%s)", r.Nodes, joinAddrs(r.IPs), t.Where(r), mode)
	}
}

// event records a Normal Announcing event on a's Service.
func (s *Speaker) event(a *Announced, format string, args ...any) {
	if svc, err := s.factory.Core().V1().Services().Lister().Services(a.Namespace).Get(a.Name); err == nil {
		s.recorder.Eventf(svc, corev1.EventTypeNormal, "Announcing", format, args...)
	}
}
