package speaker

import (
	"context"
	"strings"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// A driver applies one mode's target on this node (the planner that computes it is pure).
type driver interface {
	apply(ctx context.Context, t Target, snap *Snapshot)
}

// l2Driver answers ARP/NDP for the owned addresses and publishes this node's reach.
type l2Driver struct{ s *Speaker }

func (d l2Driver) apply(ctx context.Context, t Target, snap *Snapshot) {
	s, target := d.s, t.(*L2Target)
	s.announcer.SetOwnedProbing(target.Owned, s.probeFilter())
	s.metrics.owned.Set(float64(len(target.Owned)))
	s.publishReach(target.Reach, nodeMACs(snap.Interfaces))
	if s.reaping.CompareAndSwap(false, true) {
		go func() {
			defer s.reaping.Store(false)
			s.reapDeadOwners(ctx, target.Services, snap.Alive)
		}()
	}
}

// bgpDriver configures the embedded BGP speaker's sessions and paths and reports the sessions.
type bgpDriver struct{ s *Speaker }

func (d bgpDriver) apply(ctx context.Context, t Target, snap *Snapshot) {
	if self := nodeByName(snap.Nodes, d.s.cfg.NodeName); self != nil {
		d.s.bgp.apply(ctx, t.(*BGPTarget), nodeAddrs(self))
	}
	d.s.bgp.report()
}

// reapDeadOwners (run off the data path, one pass at a time) deletes the L2 ServiceAnnouncements that a dead node (not alive: killed, or cut off
// from memberlist without renewing its Lease) left for Services this node now owns, so that
// `kubectl get serviceannouncements` names the one node that answers. A node that comes back
// writes its own again. A node's announcement of a Service is reaped once while the node is
// gone: a node cut off from memberlist that still writes (and re-creates what was reaped) is
// left alone after that, so the two sides of a partition never delete and re-create in a loop.
func (s *Speaker) reapDeadOwners(ctx context.Context, owned map[string]*Announced, alive map[string]bool) {
	if alive == nil {
		return
	}
	for k := range s.reaped {
		if node, _, _ := strings.Cut(k, "|"); alive[node] {
			delete(s.reaped, k)
		}
	}
	for _, o := range s.crdInfs[announcementsL2].GetStore().List() {
		a := o.(*v1alpha1.ServiceAnnouncement)
		svc := a.Namespace + "/" + a.ServiceName
		if a.Mode != v1alpha1.AnnouncementL2 || a.NodeName == s.cfg.NodeName || alive[a.NodeName] ||
			owned[svc] == nil || s.reaped[a.NodeName+"|"+svc] {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.crd.Delete().Namespace(a.Namespace).Resource("serviceannouncements").Name(a.Name).Do(dctx).Error()
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			s.log.Warn("removing a dead node's ServiceAnnouncement", "service", a.Namespace+"/"+a.ServiceName, "node", a.NodeName, "err", err)
			continue
		}
		s.reaped[a.NodeName+"|"+svc] = true
		s.log.Info("removed a dead node's ServiceAnnouncement", "service", a.Namespace+"/"+a.ServiceName, "node", a.NodeName)
	}
}
