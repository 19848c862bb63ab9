package forward

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"sigs.k8s.io/knftables"
)

// staleChainGrace is how long a chain no longer referenced stays (flushed) before it is
// deleted. Kernels before 6.2 notice only a little after a transaction that a chain lost its
// last verdict-map reference, and refuse to delete it in the same transaction; kube-proxy
// waits the same way.
const staleChainGrace = time.Second

// NewInterface returns a knftables interface bound to ironlb's table, using the nft binary.
func NewInterface() (knftables.Interface, error) {
	nft, err := knftables.New(TableFamily, TableName)
	if err != nil {
		return nil, fmt.Errorf("opening nftables table %s %s: %w", TableFamily, TableName, err)
	}
	return nft, nil
}

// Applier writes Rulesets into the kernel. The first sync, and the first after a failure or
// [Applier.Invalidate], replaces the whole table in one transaction, whatever a previous
// process left there; later syncs send only what changed: map and set elements, and the few
// shared chains that appear or go. An Applier is not safe for concurrent use.
type Applier struct {
	nft     knftables.Interface
	now     func() time.Time
	current *Ruleset             // what the table holds; nil when unknown
	stale   map[string]time.Time // chains flushed, to delete once staleChainGrace has passed
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
	return &Applier{nft: nft, now: time.Now, stale: map[string]time.Time{}}
}

// Invalidate makes the next Sync replace the whole table, for instance on a timer in case
// someone edited the table by hand.
func (a *Applier) Invalidate() { a.current = nil }

// LastSync returns the result of the last successful Sync.
func (a *Applier) LastSync() SyncResult { return a.last }

// Sync makes the table match rs. On error the table is unchanged (transactions are atomic)
// and the next Sync is a full one.
func (a *Applier) Sync(ctx context.Context, rs *Ruleset) (SyncResult, error) {
	start := a.now()
	tx := a.nft.NewTransaction()
	res := SyncResult{Full: a.current == nil || !compatible(a.current, rs), Stats: rs.Stats()}
	kind := "incremental"
	if res.Full {
		kind = "full"
		rs.writeFull(tx)
	} else {
		a.writeDiff(tx, a.current, rs, start)
	}
	res.Operations = tx.NumOperations()
	if res.Operations > 0 {
		if err := a.nft.Run(ctx, tx); err != nil {
			a.current = nil
			return res, fmt.Errorf("applying %s nftables transaction of %d operations: %w", kind, res.Operations, err)
		}
	}
	if res.Full {
		a.stale = map[string]time.Time{}
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
// transaction: new sets and chains before the rules and elements that refer to them; chains
// that are gone flushed, which drops their references to sets, before those sets are deleted.
// A chain that is gone is deleted only staleChainGrace later (see there).
func (a *Applier) writeDiff(tx *knftables.Transaction, old, new *Ruleset, now time.Time) {
	for _, st := range new.sets {
		if old.setIndex[st.name()] == nil {
			tx.Add(st.object())
		}
	}
	for _, c := range new.chains {
		oc := old.chainIndex[c.def.Name]
		switch {
		case oc == nil:
			if _, flushed := a.stale[c.def.Name]; flushed {
				delete(a.stale, c.def.Name)
			} else {
				def := c.def
				tx.Add(&def)
			}
			writeRules(tx, c)
		case !equalStrings(oc.rules, c.rules):
			tx.Flush(&knftables.Chain{Name: c.def.Name})
			writeRules(tx, c)
		}
	}
	for _, st := range new.sets {
		writeElementDiff(tx, old.setIndex[st.name()], st)
	}
	for _, oc := range old.chains {
		if !new.hasChain(oc.def.Name) {
			tx.Flush(&knftables.Chain{Name: oc.def.Name})
			a.stale[oc.def.Name] = now
		}
	}
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

// writeElementDiff deletes the elements of old that new lacks or changed, then adds the
// elements of new that old lacks or had otherwise. Replacing a value takes a delete and an
// add: nft refuses to overwrite a map element. A nil old is an empty set.
func writeElementDiff(tx *knftables.Transaction, old, new *set) {
	if old == nil {
		old = &set{}
	}
	for i := range old.elems {
		oe := &old.elems[i]
		j, ok := new.index[oe.k]
		if !ok || !new.elems[j].equal(oe) {
			del := old.elementObject(oe)
			del.Value, del.Comment = nil, nil
			tx.Delete(del)
		}
	}
	for i := range new.elems {
		ne := &new.elems[i]
		j, ok := old.index[ne.k]
		if !ok || !old.elems[j].equal(ne) {
			tx.Add(new.elementObject(ne))
		}
	}
}
