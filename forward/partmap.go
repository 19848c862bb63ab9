package forward

import "maps"

// partShards is the number of shards of a partMap: with 10,000 Services a shard holds about 40
// parts, so a Ruleset after one change copies 40 entries and an Applier compares 256 shard
// pointers and 40 parts, instead of every Service's.
const partShards = 256

// partMap is the Services' parts by key ("namespace/name"), in shards that are copied on
// write: a Ruleset keeps the shards as they were when it was made (an array of pointers), and
// the Renderer copies a shard before it first changes it after that. Two Rulesets of one
// Renderer share every shard that no change touched in between, so what a Ruleset and a diff
// cost follows the shards changed, not the number of Services.
type partMap [partShards]*partShard

type partShard struct{ m map[string]*part }

func shardOf(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % partShards)
}

func (m *partMap) get(key string) *part {
	if sh := m[shardOf(key)]; sh != nil {
		return sh.m[key]
	}
	return nil
}

func (m *partMap) len() int {
	n := 0
	for _, sh := range m {
		if sh != nil {
			n += len(sh.m)
		}
	}
	return n
}

// all yields every part.
func (m *partMap) all(yield func(string, *part) bool) {
	for _, sh := range m {
		if sh == nil {
			continue
		}
		for k, p := range sh.m {
			if !yield(k, p) {
				return
			}
		}
	}
}

// partWriter changes a partMap in place, copying each shard the first time it changes it:
// the shards it had before are left as they were, for the Rulesets that hold them.
type partWriter struct {
	parts  partMap
	copied [partShards]bool
}

// set sets key's part; nil deletes it.
func (w *partWriter) set(key string, p *part) {
	i := shardOf(key)
	if !w.copied[i] {
		sh := &partShard{m: map[string]*part{}}
		if old := w.parts[i]; old != nil {
			sh.m = maps.Clone(old.m)
		}
		w.parts[i], w.copied[i] = sh, true
	}
	if p == nil {
		delete(w.parts[i].m, key)
		return
	}
	w.parts[i].m[key] = p
}

// freeze returns the map as it is; later sets copy the shards they change.
func (w *partWriter) freeze() partMap {
	clear(w.copied[:])
	return w.parts
}
