package speaker

import (
	"bytes"
	"context"
	"encoding/base64"
	"maps"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Each speaker renews a Lease of its own in its namespace; every speaker watches them, and
// l2.Liveness adds to memberlist's view the nodes cut off from this node's gossip but still
// renewing, so neither side of a memberlist partition claims the other's IPs (l2 README,
// "Partitions"). A speaker's Lease, not the kubelet's: a node whose kubelet lives but whose
// speaker crashed must lose its IPs at once.

// LabelSpeakerLease marks the speakers' Leases (the value is "true"); the holder identity is
// the node name.
const LabelSpeakerLease = "ironlb.io/speaker-lease"

// AnnotationL2Meta on a speaker's Lease carries what the node publishes in its memberlist
// metadata (its L2 reach and MACs, base64): a node the others keep alive by its Lease alone
// is elected by what it can still do. Without it, a node whose LAN link is down (out of
// memberlist, but renewing its Lease over another link) would keep its IPs, which it cannot
// answer for, and nobody would announce them.
const AnnotationL2Meta = "ironlb.io/l2-meta"

// leaseMetas holds the metadata each speaker last wrote on its Lease, by node.
type leaseMetas struct {
	mu sync.Mutex
	m  map[string][]byte
}

// set records node's metadata (nil: none) and reports whether it changed.
func (l *leaseMetas) set(node string, meta []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]byte{}
	}
	old, ok := l.m[node]
	if meta == nil {
		delete(l.m, node)
		return ok
	}
	l.m[node] = meta
	return !ok || !bytes.Equal(old, meta)
}

func (l *leaseMetas) get(node string) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.m[node]
	return m, ok
}

// metaOf reads AnnotationL2Meta; nil when absent or unreadable.
func metaOf(l *coordinationv1.Lease) []byte {
	v, ok := l.Annotations[AnnotationL2Meta]
	if !ok {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil
	}
	return b
}

// leaseName names node's Lease.
func leaseName(node string) string { return truncateName("speaker." + node) }

// newLeaseInformer watches the speakers' Leases in ns and feeds their renewals to s.liveness.
func (s *Speaker) newLeaseInformer(ns string) (informers.SharedInformerFactory, error) {
	f := informers.NewSharedInformerFactoryWithOptions(s.kube, 0, informers.WithNamespace(ns), informers.WithTransform(slim),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{LabelSpeakerLease: "true"}.String()
		}))
	renewed := func(l *coordinationv1.Lease, at time.Time) {
		switch {
		case l.Spec.HolderIdentity == nil:
		case *l.Spec.HolderIdentity == s.cfg.NodeName:
			// This node's own renewals, as the watch brings them, are its clock for the
			// others' (l2.Liveness.Renewing).
			if _, renewing := s.liveness.Renewed(s.cfg.NodeName, at); renewing {
				s.kick()
			}
		default:
			// memberlist's view (Alive) and a node's published reach are the L2 election's:
			// without L2Advertisements nothing reads them, and a speaker that memberlist's
			// flapping left with few members would sync for most renewals (50 x 5,000: one
			// speaker synced 17 times a second, each sync finding nothing changed).
			metaChanged := s.leaseMetas.set(*l.Spec.HolderIdentity, metaOf(l))
			alive, renewing := s.liveness.Renewed(*l.Spec.HolderIdentity, at)
			if renewing || (alive || metaChanged) && len(s.crdInfs["l2advertisements"].GetStore().ListKeys()) > 0 {
				s.kick()
			}
		}
	}
	_, err := f.Coordination().V1().Leases().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			// Seen for the first time (at start, or created): renewed when it says, by this
			// node's clock, never later than now.
			l := obj.(*coordinationv1.Lease)
			if l.Spec.RenewTime != nil {
				renewed(l, minTime(l.Spec.RenewTime.Time, time.Now()))
			}
		},
		UpdateFunc: func(old, cur any) {
			o, c := old.(*coordinationv1.Lease), cur.(*coordinationv1.Lease)
			switch {
			case c.Spec.RenewTime != nil && (o.Spec.RenewTime == nil || !o.Spec.RenewTime.Equal(c.Spec.RenewTime)):
				renewed(c, time.Now()) // seen now: clocks of other nodes are not compared
			case c.Spec.HolderIdentity != nil && *c.Spec.HolderIdentity != s.cfg.NodeName && s.leaseMetas.set(*c.Spec.HolderIdentity, metaOf(c)):
				s.kick()
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if l, ok := obj.(*coordinationv1.Lease); ok && l.Spec.HolderIdentity != nil {
				s.liveness.Forget(*l.Spec.HolderIdentity)
				s.leaseMetas.set(*l.Spec.HolderIdentity, nil)
				s.kick()
			}
		},
	})
	return f, err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// renewLease renews this node's Lease every Lease.Renew, and at once when this node publishes
// new metadata (publishReach), until ctx ends, each attempt bounded by that interval: an
// unreachable API server costs failed renewals, nothing else.
func (s *Speaker) renewLease(ctx context.Context) {
	t := time.NewTicker(s.cfg.Lease.Renew)
	defer t.Stop()
	var cur *coordinationv1.Lease
	failing := false
	for {
		next, err := s.renewOnce(ctx, cur)
		switch {
		case err != nil && !failing:
			s.log.Warn("renewing this speaker's Lease", "err", err)
		case err == nil && failing:
			s.log.Info("renewing this speaker's Lease again")
		}
		cur, failing = next, err != nil
		last := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.metaChanged:
			// At once, but at most one early renewal a second: a flapping link costs
			// bounded writes.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(last.Add(time.Second))):
			}
			t.Reset(s.cfg.Lease.Renew)
		}
	}
}

// renewOnce renews (or creates) the Lease; it returns what the server stored, or nil to read
// it again next time.
func (s *Speaker) renewOnce(ctx context.Context, cur *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Lease.Renew)
	defer cancel()
	leases := s.kube.CoordinationV1().Leases(s.cfg.Namespace)
	now := metav1.NewMicroTime(time.Now())
	if cur == nil {
		got, err := leases.Get(ctx, leaseName(s.cfg.NodeName), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := leases.Create(ctx, s.newLease(now), metav1.CreateOptions{})
			if err != nil {
				return nil, err
			}
			return created, nil
		case err != nil:
			return nil, err
		}
		cur = got
	}
	upd := cur.DeepCopy()
	upd.Spec.HolderIdentity = &s.cfg.NodeName
	upd.Spec.RenewTime = &now
	s.annotateMeta(&upd.ObjectMeta)
	res, err := leases.Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// newLease is this node's Lease, owned by its Node (deleted with it).
func (s *Speaker) newLease(now metav1.MicroTime) *coordinationv1.Lease {
	secs := int32(s.cfg.Lease.Duration / time.Second)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: leaseName(s.cfg.NodeName), Namespace: s.cfg.Namespace,
			Labels: map[string]string{LabelSpeakerLease: "true"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &s.cfg.NodeName, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
	}
	s.annotateMeta(&l.ObjectMeta)
	if n, err := s.factory.Core().V1().Nodes().Lister().Get(s.cfg.NodeName); err == nil {
		l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
	}
	return l
}

// annotateMeta writes this node's published metadata (AnnotationL2Meta) on its Lease; before
// this process published any, it removes what an earlier run wrote (absent reads as full
// reach, as empty memberlist metadata does).
func (s *Speaker) annotateMeta(m *metav1.ObjectMeta) {
	meta := s.published.Load()
	if meta == nil {
		delete(m.Annotations, AnnotationL2Meta)
		return
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[AnnotationL2Meta] = base64.StdEncoding.EncodeToString(*meta)
}

// deleteLease removes this node's Lease on a graceful shutdown (best effort, within ctx), so
// the others count the node as gone with memberlist.
func (s *Speaker) deleteLease(ctx context.Context) error {
	if s.cfg.Namespace == "" {
		return nil
	}
	err := s.kube.CoordinationV1().Leases(s.cfg.Namespace).Delete(ctx, leaseName(s.cfg.NodeName), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// alive is the nodes to elect among: memberlist's view plus the nodes l2.Liveness keeps alive
// by their Leases; and renewing, the nodes whose Lease is fresh on the watch's clock, this one
// included (nil when no other's is: no Leases, or none seen yet; with the API server out of
// reach it stays what it was, l2.Liveness.Renewing). It logs when the first changes and looks
// again when a Lease goes stale.
func (s *Speaker) alive() (alive, renewing map[string]bool) {
	now := time.Now()
	members := s.members.Alive()
	alive, next := s.liveness.Alive(members, s.members.Degraded(), now)
	var byLease []string
	for n := range alive {
		if !members[n] {
			byLease = append(byLease, n)
		}
	}
	slices.Sort(byLease)
	if !slices.Equal(byLease, s.byLease) {
		s.log.Info("nodes cut off from memberlist but renewing their Lease count as alive", "nodes", byLease,
			"members", slices.Sorted(maps.Keys(members)))
		s.byLease = byLease
	}
	if s.cfg.Namespace != "" {
		var stale time.Time
		renewing, stale = s.liveness.Renewing(now)
		delete(renewing, s.cfg.NodeName)
		if len(renewing) == 0 {
			renewing = nil
		} else {
			renewing[s.cfg.NodeName] = true
		}
		if next.IsZero() || !stale.IsZero() && stale.Before(next) {
			next = stale
		}
	}
	if !next.IsZero() {
		d := time.Until(next) + 10*time.Millisecond
		if s.recheck == nil {
			s.recheck = time.AfterFunc(d, s.kick)
		} else {
			s.recheck.Reset(d)
		}
	}
	return alive, renewing
}
