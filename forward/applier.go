package forward

import (
	"context"
	"fmt"
	"reflect"
	"slices"
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
	kept    map[string]*chain    // pick chains no longer used, left in place (see writePicks)
	shared  map[elemKey]int      // shared elements in the table, with the number of parts that have each
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
func (a *Applier) Invalidate() { a.current, a.shared = nil, nil }

// Remove deletes ironlb's table, if it is there, and makes the next Sync a full one. The
// speaker calls it when it stops forwarding (kube-proxy appeared, or --forwarding=off found a
// table left by an earlier run): a table nobody updates would DNAT to endpoints of the past.
func (a *Applier) Remove(ctx context.Context) error {
	a.current, a.stale, a.kept, a.shared = nil, map[string]time.Time{}, map[string]*chain{}, nil
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
	var changes []partChange
	full := a.current == nil
	if !full {
		changes = changedParts(a.current, rs)
		full = !compatible(a.current, rs, changes)
	}
	res := SyncResult{Full: full, Stats: rs.Stats()}
	kind, run := "incremental", func() error { return a.nft.Run(ctx, tx) }
	var shared map[elemKey]int
	switch runner, direct := a.nft.(textRunner); {
	case res.Full && direct:
		kind = "full"
		var text string
		text, res.Operations, shared = rs.fullText(tx)
		run = func() error { return runner.runText(ctx, text) }
	case res.Full:
		kind = "full"
		shared = rs.writeFull(tx)
		res.Operations = tx.NumOperations()
	default:
		a.writeDiff(tx, a.current, rs, changes, start)
		res.Operations = tx.NumOperations()
	}
	if res.Operations > 0 {
		if err := run(); err != nil {
			a.current, a.shared = nil, nil
			return res, fmt.Errorf("applying %s nftables transaction of %d operations: %w", kind, res.Operations, err)
		}
	}
	if res.Full {
		a.stale, a.kept, a.shared = map[string]time.Time{}, map[string]*chain{}, shared
	}
	a.current = rs
	res.Duration = a.now().Sub(start)
	a.last = res
	return res, nil
}

// partChange is a part that differs between two Rulesets; old or new is nil when the part
// appears or goes.
type partChange struct{ old, new *part }

// changedParts returns the parts that differ between old and new, the base first, then in
// namespace/name order. The shards of parts two Rulesets share are skipped (see partMap); in
// the others parts are compared by pointer, then by hash: the cost follows the number of
// shards and the size of the change, not the number of Services.
func changedParts(old, new *Ruleset) []partChange {
	var out []partChange
	for i := range partShards {
		oldSh, newSh := old.parts[i], new.parts[i]
		if oldSh == newSh {
			continue
		}
		var om, nm map[string]*part
		if oldSh != nil {
			om = oldSh.m
		}
		if newSh != nil {
			nm = newSh.m
		}
		for k, np := range nm {
			if op := om[k]; !samePart(op, np) {
				out = append(out, partChange{op, np})
			}
		}
		for k, op := range om {
			if nm[k] == nil {
				out = append(out, partChange{op, nil})
			}
		}
	}
	slices.SortFunc(out, func(a, b partChange) int { return comparePart(a.any(), b.any()) })
	if !samePart(old.base, new.base) {
		out = append([]partChange{{old.base, new.base}}, out...)
	}
	return out
}

func (c partChange) any() *part {
	if c.new != nil {
		return c.new
	}
	return c.old
}

// compatible reports whether new can be reached from old by changing elements, regular chains
// and sets that one of them lacks: the sets and chains both have are declared alike.
func compatible(old, new *Ruleset, changes []partChange) bool {
	for _, c := range changes {
		if c.old == nil || c.new == nil {
			continue
		}
		for _, st := range c.new.sets {
			if o := c.old.set(st.name()); o != nil && !st.sameDefinition(o) {
				return false
			}
		}
		for _, ch := range c.new.chains {
			if oc := c.old.chain(ch.def.Name); oc != nil && !reflect.DeepEqual(oc.def, ch.def) {
				return false
			}
		}
	}
	return true
}

// writeDiff queues the operations that turn old into new, in an order nft accepts within one
// transaction: new sets and chains before the rules and elements that refer to them; element
// deletions before additions (an element may move from one Service to another); chains that are
// gone flushed, which drops their references to sets, before those sets are deleted.
func (a *Applier) writeDiff(tx *knftables.Transaction, old, new *Ruleset, changes []partChange, now time.Time) {
	for _, c := range changes {
		if c.new == nil {
			continue
		}
		for _, st := range c.new.sets {
			if c.old == nil || c.old.set(st.name()) == nil {
				tx.Add(st.object())
			}
		}
	}
	a.writePicks(tx, old, new)
	for _, c := range changes {
		if c.new != nil {
			a.writeChains(tx, c.old, c.new)
		}
	}
	a.writeElementDiff(tx, changes)
	for _, c := range changes {
		if c.old != nil {
			a.writeGoneChains(tx, c.old, c.new, now)
		}
	}
	for _, c := range changes {
		for _, st := range oldOnly(c) {
			tx.Delete(st.object())
		}
	}
	for name, since := range a.stale {
		if now.Sub(since) >= staleChainGrace {
			tx.Delete(&knftables.Chain{Name: name})
			delete(a.stale, name)
		}
	}
}

// oldOnly returns the sets of c.old that c.new lacks.
func oldOnly(c partChange) []*set {
	var out []*set
	if c.old == nil {
		return nil
	}
	for _, st := range c.old.sets {
		if c.new == nil || c.new.set(st.name()) == nil {
			out = append(out, st)
		}
	}
	return out
}

// writePicks adds the pick chains new uses that the table lacks. A pick chain no longer used
// stays as it is: its rules use the big endpoint maps, and adding such a rule back later makes
// the kernel walk every element of the map, so an unused pick chain (a few rules, no elements)
// is cheaper to keep until the next full sync.
func (a *Applier) writePicks(tx *knftables.Transaction, old, new *Ruleset) {
	for name, c := range new.picks {
		if old.picks[name] != nil {
			continue
		}
		if a.kept[name] != nil {
			delete(a.kept, name)
			continue
		}
		def := c.def
		tx.Add(&def)
		writeRules(tx, c)
	}
	for name, c := range old.picks {
		if new.picks[name] == nil {
			a.kept[name] = c
		}
	}
}

// writeChains adds the chains of new that the table lacks and rewrites those whose rules
// changed. A chain may still be in the table without being in old: flushed and waiting for
// deletion (stale).
func (a *Applier) writeChains(tx *knftables.Transaction, old, new *part) {
	for _, c := range new.chains {
		name := c.def.Name
		var oc *chain
		if old != nil {
			oc = old.chain(name)
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

// writeGoneChains flushes the chains of old that new lacks, to delete after the grace.
func (a *Applier) writeGoneChains(tx *knftables.Transaction, old, new *part, now time.Time) {
	for _, oc := range old.chains {
		if new != nil && new.chain(oc.def.Name) != nil {
			continue
		}
		tx.Flush(&knftables.Chain{Name: oc.def.Name})
		a.stale[oc.def.Name] = now
	}
}

// writeElementDiff queues the element deletions, then additions, that turn the old parts of
// changes into the new ones. A shared element (a local endpoint, a Service IP) is counted over
// all parts: it goes when no part has it any more and comes when the first part adds it.
func (a *Applier) writeElementDiff(tx *knftables.Transaction, changes []partChange) {
	var adds []*knftables.Element
	type touched struct {
		e      *element
		before int
	}
	shared := map[elemKey]*touched{}
	count := func(e *element, d int) {
		k := elemKey{e.st.name(), e.k}
		t := shared[k]
		if t == nil {
			t = &touched{e: e, before: a.shared[k]}
			shared[k] = t
		}
		if d > 0 {
			t.e = e
		}
		if a.shared[k] += d; a.shared[k] <= 0 {
			delete(a.shared, k)
		}
	}
	for _, c := range changes {
		oldIdx, newIdx := elementIndex(c.old), elementIndex(c.new)
		if c.old != nil {
			for i := range c.old.elems {
				e := &c.old.elems[i]
				ne, ok := newIdx[elemKey{e.st.name(), e.k}]
				switch {
				case e.st.shared && !ok:
					count(e, -1)
				case e.st.shared:
				case !ok || !ne.equal(e):
					del := e.object()
					del.Value, del.Comment = nil, nil
					tx.Delete(del)
				}
			}
		}
		if c.new != nil {
			for i := range c.new.elems {
				e := &c.new.elems[i]
				oe, ok := oldIdx[elemKey{e.st.name(), e.k}]
				switch {
				case e.st.shared && !ok:
					count(e, 1)
				case e.st.shared:
				case !ok || !oe.equal(e):
					adds = append(adds, e.object())
				}
			}
		}
	}
	for k, t := range shared {
		switch now := a.shared[k]; {
		case t.before > 0 && now == 0:
			tx.Delete(t.e.object())
		case t.before == 0 && now > 0:
			adds = append(adds, t.e.object())
		}
	}
	for _, e := range adds {
		tx.Add(e)
	}
}

func elementIndex(p *part) map[elemKey]*element {
	if p == nil {
		return nil
	}
	m := make(map[elemKey]*element, len(p.elems))
	for i := range p.elems {
		e := &p.elems[i]
		m[elemKey{e.st.name(), e.k}] = e
	}
	return m
}
