package speaker

import (
	"context"
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
