package forward

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"
)

// ClientIP affinity lives in one timed map per family, written by the packet path: client .
// frontend -> endpoint. When an endpoint leaves a frontend (scaled down, not ready, affinity
// turned off, Service deleted), entries pointing to it would keep sending that client to a dead
// endpoint until they expire (3 hours by default). The applier removes them in the same
// transaction that removes the endpoint: it lists the map and deletes the entries whose
// frontend lost their endpoint. Entries can expire between the listing and the transaction, so
// each deletion is preceded by an add of the same element, which makes it succeed either way
// (the "destroy" that nft 1.0.6 lacks).

// staleAffinity maps a frontend key ("addr . proto . port") to the endpoint values
// ("addr . port") that affinity entries for it may no longer point to.
type staleAffinity map[string]map[string]bool

// removedAffinityEndpoints compares the affinity frontends of old and new in family f.
func removedAffinityEndpoints(old, new *Ruleset, f ipFamily) staleAffinity {
	out := staleAffinity{}
	for _, e := range old.setIndex[affinityFrontendsMap(f)].elems {
		before := frontendEndpoints(old, f, e.key)
		var after map[string]bool
		if new.hasElement(affinityFrontendsMap(f), e.key...) {
			after = frontendEndpoints(new, f, e.key)
		}
		for ep := range before {
			if !after[ep] {
				if out[e.k] == nil {
					out[e.k] = map[string]bool{}
				}
				out[e.k][ep] = true
			}
		}
	}
	return out
}

// frontendEndpoints returns the endpoints ("addr . port") of a frontend.
func frontendEndpoints(r *Ruleset, f ipFamily, fe []string) map[string]bool {
	out := map[string]bool{}
	for slot := 0; ; slot++ {
		v, ok := r.lookup(endpointsMap(f), fe[0], fe[1], fe[2], itoa(slot))
		if !ok {
			return out
		}
		out[joinKey(v)] = true
	}
}

// writeAffinityCleanup queues the deletion of affinity entries that point to endpoints their
// frontend lost between old and new, and returns how many it queued. If the map cannot be
// listed, it is flushed instead: every client of this node loses its affinity once, which is
// better than some keeping a dead endpoint.
func (a *Applier) writeAffinityCleanup(ctx context.Context, tx *knftables.Transaction, old, new *Ruleset) (int, error) {
	n := 0
	for _, f := range families {
		stale := removedAffinityEndpoints(old, new, f)
		if len(stale) == 0 {
			continue
		}
		name := affinityMap(f)
		entries, err := a.nft.ListElements(ctx, "map", name)
		if knftables.IsNotFound(err) {
			a.current = nil
			return 0, fmt.Errorf("listing %s: table changed behind the speaker's back: %w", name, err)
		}
		if err != nil {
			tx.Flush(&knftables.Map{Name: name})
			continue
		}
		for _, e := range entries {
			if len(e.Key) != 4 || !stale[joinKey(e.Key[1:])][joinKey(e.Value)] {
				continue
			}
			tx.Add(&knftables.Element{Map: name, Key: e.Key, Value: e.Value})
			tx.Delete(&knftables.Element{Map: name, Key: e.Key})
			n++
		}
	}
	return n, nil
}
