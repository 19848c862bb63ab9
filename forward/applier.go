package forward

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// staleChainGrace is how long a chain no longer referenced stays (flushed) before it is
// deleted. Kernels before 6.2 notice only a little after a transaction that a chain lost its
// last verdict-map reference, and refuse to delete it in the same transaction; kube-proxy
// waits the same way.
const staleChainGrace = time.Second

// Applier writes Rulesets into the kernel. The first sync, and the first after a failure or
// [Applier.Invalidate], replaces the whole table in one transaction, whatever a previous
// process left there; later syncs send only what changed: map and set elements, and the few
// shared chains that appear or go. An Applier is not safe for concurrent use.
type Applier struct {
	nft     knftables.Interface
	now     func() time.Time
	current *Ruleset             // what the table holds; nil when unknown
	stale   map[string]time.Time // chains flushed, to delete once staleChainGrace has passed
	kept    map[string]*chain    // pick chains no longer used, left in place (see writeChains)
	last    SyncResult
}

// SyncResult describes one sync, for logs and metrics.
type SyncResult struct {
	// Full is true when the whole table was replaced.
	Full bool
	// Operations is the number of operations in the transaction; zero when nothing changed
	// (then nft was not run).
	Operations int
	// Duration is the time taken to diff, build and run the transaction.
	Duration time.Duration
	// Stats describes the Ruleset that was applied.
	Stats Stats
}

// NewApplier returns an Applier writing through nft, which must be bound to ironlb's table
// (see [NewInterface]; tests pass a knftables.Fake). It does not touch nftables until Sync.
func NewApplier(nft knftables.Interface) *Applier {
	return &Applier{nft: nft, now: time.Now, stale: map[string]time.Time{}, kept: map[string]*chain{}}
}

// Invalidate makes the next Sync replace the whole table, for instance on a timer in case
// someone edited the table by hand.
func (a *Applier) Invalidate() { a.current = nil }

// Remove deletes ironlb's table, if it is there, and makes the next Sync a full one. The
// speaker calls it when it stops forwarding (kube-proxy appeared, or --forwarding=off found a
// table left by an earlier run): a table nobody updates would DNAT to endpoints of the past.
func (a *Applier) Remove(ctx context.Context) error {
	a.current, a.stale, a.kept = nil, map[string]time.Time{}, map[string]*chain{}
	return RemoveTable(ctx, a.nft)
}

// RemoveTable deletes ironlb's table through nft (bound to it, see [NewInterface]) if it
// exists, in one transaction.
func RemoveTable(ctx context.Context, nft knftables.Interface) error {
	tx := nft.NewTransaction()
	// Adding an existing table is a no-op, so the delete never fails for a missing table.
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("deleting nftables table %s %s: %w", TableFamily, TableName, err)
	}
	return nil
}

// LastSync returns the result of the last successful Sync.
func (a *Applier) LastSync() SyncResult { return a.last }

// Sync makes the table match rs. On error the table is unchanged (transactions are atomic)
// and the next Sync is a full one.
func (a *Applier) Sync(ctx context.Context, rs *Ruleset) (SyncResult, error) {
	start := a.now()
	tx := a.nft.NewTransaction()
	res := SyncResult{Full: a.current == nil || !compatible(a.current, rs), Stats: rs.Stats()}
	kind, run := "incremental", func() error { return a.nft.Run(ctx, tx) }
	switch runner, direct := a.nft.(textRunner); {
	case res.Full && direct:
		kind = "full"
		var text string
		text, res.Operations = rs.fullText(tx)
		run = func() error { return runner.runText(ctx, text) }
	case res.Full:
		kind = "full"
		rs.writeFull(tx)
		res.Operations = tx.NumOperations()
	default:
		a.writeDiff(tx, a.current, rs, start)
		res.Operations = tx.NumOperations()
	}
	if res.Operations > 0 {
		if err := run(); err != nil {
			a.current = nil
			return res, fmt.Errorf("applying %s nftables transaction of %d operations: %w", kind, res.Operations, err)
		}
	}
	if res.Full {
		a.stale, a.kept = map[string]time.Time{}, map[string]*chain{}
	}
	a.current = rs
	res.Duration = a.now().Sub(start)
	a.last = res
	return res, nil
}

// compatible reports whether new can be reached from old by changing elements, regular chains
// and sets that one of them lacks: the sets and chains both have are declared alike.
func compatible(old, new *Ruleset) bool {
	for _, st := range new.sets {
		if o := old.setIndex[st.name()]; o != nil && !st.sameDefinition(o) {
			return false
		}
	}
	for _, c := range new.chains {
		if oc := old.chainIndex[c.def.Name]; oc != nil && !reflect.DeepEqual(oc.def, c.def) {
			return false
		}
	}
	return true
}

// writeDiff queues the operations that turn old into new, in an order nft accepts within one
// transaction: new sets and chains before the rules and elements that refer to them; element
// deletions before additions (an element may move from one Service to another); chains that are
// gone flushed, which drops their references to sets, before those sets are deleted.
func (a *Applier) writeDiff(tx *knftables.Transaction, old, new *Ruleset, now time.Time) {
	for _, st := range new.sets {
		if old.setIndex[st.name()] == nil {
			tx.Add(st.object())
		}
	}
	a.writeChains(tx, old, new)
	writeElementDiff(tx, old, new)
	a.writeGoneChains(tx, old, new, now)
	for _, st := range old.sets {
		if new.setIndex[st.name()] == nil {
			tx.Delete(st.object())
		}
	}
	for name, since := range a.stale {
		if !new.hasChain(name) && !old.hasChain(name) && now.Sub(since) >= staleChainGrace {
			tx.Delete(&knftables.Chain{Name: name})
			delete(a.stale, name)
		}
	}
}

// writeChains adds the chains of new that the table lacks and rewrites those whose rules
// changed. A chain may still be in the table without being in old: flushed and waiting for
// deletion (stale), or a pick chain kept unused.
func (a *Applier) writeChains(tx *knftables.Transaction, old, new *Ruleset) {
	for _, c := range new.chains {
		name := c.def.Name
		oc := old.chainIndex[name]
		if oc == nil {
			oc = a.kept[name]
			delete(a.kept, name)
		}
		switch {
		case oc == nil:
			if _, flushed := a.stale[name]; flushed {
				delete(a.stale, name)
			} else {
				def := c.def
				tx.Add(&def)
			}
			writeRules(tx, c)
		case !equalStrings(oc.rules, c.rules):
			tx.Flush(&knftables.Chain{Name: name})
			writeRules(tx, c)
		}
	}
}

// writeGoneChains deals with the chains of old that new lacks. A pick chain stays as it is:
// its rules use the big endpoint maps, and adding such a rule back later makes the kernel walk
// every element of the map, so an unused pick chain (a few rules, no elements) is cheaper to
// keep until the next full sync. Other chains are flushed now and deleted after the grace.
func (a *Applier) writeGoneChains(tx *knftables.Transaction, old, new *Ruleset, now time.Time) {
	for _, oc := range old.chains {
		name := oc.def.Name
		switch {
		case new.hasChain(name):
		case strings.HasPrefix(name, pickChainPrefix):
			a.kept[name] = oc
		default:
			tx.Flush(&knftables.Chain{Name: name})
			a.stale[name] = now
		}
	}
}

// writeElementDiff queues the element deletions, then additions, that turn old into new. Only
// the groups (Service ports) whose hash changed are compared element by element.
func writeElementDiff(tx *knftables.Transaction, old, new *Ruleset) {
	var adds []*knftables.Element
	for _, ng := range new.groups {
		og := old.groupIndex[ng.key]
		if og != nil && og.hash == ng.hash {
			continue
		}
		adds = diffGroup(tx, og, ng, adds)
	}
	for _, og := range old.groups {
		if new.groupIndex[og.key] == nil {
			adds = diffGroup(tx, og, nil, adds)
		}
	}
	for _, e := range adds {
		tx.Add(e)
	}
}

// diffGroup queues the deletion of old's elements that new lacks or changed and returns adds
// with new's elements that old lacks or had otherwise. Either group may be nil.
func diffGroup(tx *knftables.Transaction, old, new *group, adds []*knftables.Element) []*knftables.Element {
	type setKey struct {
		st string
		k  string
	}
	index := func(g *group) map[setKey]*element {
		m := map[setKey]*element{}
		if g != nil {
			for _, ref := range g.refs {
				e := g.element(ref)
				m[setKey{ref.st.name(), e.k}] = e
			}
		}
		return m
	}
	oldIdx, newIdx := index(old), index(new)
	if old != nil {
		for _, ref := range old.refs {
			e := old.element(ref)
			if ne, ok := newIdx[setKey{ref.st.name(), e.k}]; !ok || !ne.equal(e) {
				del := ref.st.elementObject(e)
				del.Value, del.Comment = nil, nil
				tx.Delete(del)
			}
		}
	}
	if new != nil {
		for _, ref := range new.refs {
			e := new.element(ref)
			if oe, ok := oldIdx[setKey{ref.st.name(), e.k}]; !ok || !oe.equal(e) {
				adds = append(adds, ref.st.elementObject(e))
			}
		}
	}
	return adds
}
