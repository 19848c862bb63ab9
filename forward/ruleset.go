package forward

import (
	"cmp"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// Ruleset is the desired content of ironlb's table as plain data: a base part (the chains, sets
// and maps that do not depend on the Services, and this node's elements), one part per Service
// (its elements, and the chains and sets of ClientIP affinity), and the shared pick chains the
// parts use. A [Renderer] builds it; nothing changes it afterwards, so it may be kept and
// compared. Successive Rulesets of one Renderer share the parts of the Services that did not
// change, so an [Applier] finds what changed by comparing part pointers, whatever the number of
// Services.
type Ruleset struct {
	base  *part
	parts partMap           // by namespace/name
	picks map[string]*chain // pick chains used by the parts, by name
	stats Stats
}

// part is what one Service (or the base) adds to the table.
type part struct {
	key, namespace, name string
	chains               []*chain
	sets                 []*set // definitions; their elements are in elems
	elems                []element
	picks                []string // the shared pick chains its elements jump to
	hash                 uint64   // FNV-1a over all of the above
	dedup                map[setKey]struct{}
	own                  int // elements in sets that are not shared
	rules                int
}

// setKey is an element's set and key, within one part.
type setKey struct {
	st *set
	k  string
}

// elemKey is an element's set name and key, across Rulesets.
type elemKey struct{ set, k string }

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return (h ^ 0xff) * fnvPrime // separator
}

type chain struct {
	def   knftables.Chain
	rules []string
}

// set is a set or a map definition (exactly one of def and mapDef is non-nil).
type set struct {
	def    *knftables.Set
	mapDef *knftables.Map
	// shared: several parts may add the same element (a local endpoint, a Service IP of two
	// Services); the Applier counts them and the table holds one.
	shared bool
	// dedup: a part may add the same element twice; it keeps the first.
	dedup bool
}

// element is a set or map element with its key and value already joined with " . ", which is
// how knftables writes a concatenation.
type element struct {
	st      *set
	k       string // key
	v       string // value; "" for set elements
	comment string
}

// Stats counts what a Ruleset holds.
type Stats struct {
	Chains   int
	Rules    int
	Sets     int // sets and maps
	Elements int
}

func newPart(namespace, name string) *part {
	return &part{key: namespace + "/" + name, namespace: namespace, name: name, hash: fnvOffset}
}

// add adds an element unless the set deduplicates and the part has it already.
func (p *part) add(st *set, k, v, comment string) {
	if (st.dedup || st.shared) && p.has(st, k) {
		return
	}
	p.elems = append(p.elems, element{st: st, k: k, v: v, comment: comment})
	if !st.shared {
		p.own++
	}
	p.hash = fnvAdd(fnvAdd(fnvAdd(fnvAdd(p.hash, st.name()), k), v), comment)
}

// has reports whether the part added key k to st, a set that deduplicates. Most parts are
// small and look through their elements; a large one indexes them.
func (p *part) has(st *set, k string) bool {
	if p.dedup == nil && len(p.elems) < 64 {
		for i := range p.elems {
			if e := &p.elems[i]; e.st == st && e.k == k {
				return true
			}
		}
		return false
	}
	if p.dedup == nil {
		p.dedup = map[setKey]struct{}{}
		for i := range p.elems {
			if e := &p.elems[i]; e.st.dedup || e.st.shared {
				p.dedup[setKey{e.st, e.k}] = struct{}{}
			}
		}
	}
	_, ok := p.dedup[setKey{st, k}]
	if !ok {
		p.dedup[setKey{st, k}] = struct{}{} // the caller adds it
	}
	return ok
}

// addChain adds a chain with the given rules, or appends the rules if the part has it.
func (p *part) addChain(def knftables.Chain, rules ...string) {
	c := p.chain(def.Name)
	if c == nil {
		c = &chain{def: def}
		p.chains = append(p.chains, c)
	}
	c.rules = append(c.rules, rules...)
	p.rules += len(rules)
}

func (p *part) chain(name string) *chain {
	for _, c := range p.chains {
		if c.def.Name == name {
			return c
		}
	}
	return nil
}

func (p *part) set(name string) *set {
	for _, st := range p.sets {
		if st.name() == name {
			return st
		}
	}
	return nil
}

func (p *part) addSet(def knftables.Set) *set {
	st := &set{def: &def}
	p.sets = append(p.sets, st)
	return st
}

func (p *part) addMap(def knftables.Map) *set {
	st := &set{mapDef: &def}
	p.sets = append(p.sets, st)
	return st
}

func (p *part) usePick(name string) {
	if !slices.Contains(p.picks, name) {
		p.picks = append(p.picks, name)
	}
}

// finish folds the chains, sets and picks into the hash and drops what only building needed.
func (p *part) finish() *part {
	for _, c := range p.chains {
		p.hash = fnvAdd(p.hash, c.def.Name)
		for _, r := range c.rules {
			p.hash = fnvAdd(p.hash, r)
		}
	}
	for _, st := range p.sets {
		p.hash = fnvAdd(p.hash, st.String())
	}
	for _, n := range p.picks {
		p.hash = fnvAdd(p.hash, n)
	}
	p.dedup = nil
	return p
}

// same reports whether two parts (either may be nil) have the same content.
func samePart(a, b *part) bool {
	return a == b || (a != nil && b != nil && a.hash == b.hash)
}

// Stats returns the number of chains, rules, sets (and maps) and elements.
func (r *Ruleset) Stats() Stats { return r.stats }

// sortedParts returns the parts in namespace/name order.
func (r *Ruleset) sortedParts() []*part {
	out := make([]*part, 0, r.parts.len())
	for _, p := range r.parts.all {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePart)
	return out
}

func comparePart(a, b *part) int {
	return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
}

// sortedPicks returns the pick chains in name order.
func (r *Ruleset) sortedPicks() []*chain {
	out := make([]*chain, 0, len(r.picks))
	for _, c := range r.picks {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *chain) int { return cmp.Compare(a.def.Name, b.def.Name) })
	return out
}

// allParts returns the base and the Services' parts, in order.
func (r *Ruleset) allParts() []*part { return append([]*part{r.base}, r.sortedParts()...) }

// chains returns every chain: the base's, the pick chains, the parts'.
func (r *Ruleset) chains(parts []*part) []*chain {
	out := slices.Clone(parts[0].chains)
	out = append(out, r.sortedPicks()...)
	for _, p := range parts[1:] {
		out = append(out, p.chains...)
	}
	return out
}

// addChain adds a chain to a copy of the base part (tests).
func (r *Ruleset) addChain(def knftables.Chain, rules ...string) {
	b := *r.base
	b.chains = slices.Clone(b.chains)
	b.addChain(def, rules...)
	b.hash = fnvAdd(b.hash, def.Name+strings.Join(rules, "\n"))
	r.base = &b
}

func (st *set) name() string {
	if st.def != nil {
		return st.def.Name
	}
	return st.mapDef.Name
}

// String describes the definition, for hashes.
func (st *set) String() string {
	if st.def != nil {
		return "set " + st.def.Name + " " + st.def.Type + " " + st.def.TypeOf + " " + strconv.Itoa(len(st.def.Flags)) + " " + durationString(st.def.Timeout)
	}
	return "map " + st.mapDef.Name + " " + st.mapDef.Type + " " + st.mapDef.TypeOf
}

func durationString[T interface{ String() string }](d *T) string {
	if d == nil {
		return ""
	}
	return (*d).String()
}

// object returns a fresh copy of the set or map definition for a transaction.
func (st *set) object() knftables.Object {
	if st.def != nil {
		d := *st.def
		return &d
	}
	d := *st.mapDef
	return &d
}

// sameDefinition reports whether two sets or maps are declared alike.
func (st *set) sameDefinition(o *set) bool {
	return reflect.DeepEqual(st.def, o.def) && reflect.DeepEqual(st.mapDef, o.mapDef)
}

// elementObject returns the knftables element for e. Key and Value hold one joined string
// each; knftables writes them joined with " . " either way.
func (e *element) object() *knftables.Element {
	el := &knftables.Element{Key: []string{e.k}}
	if e.v != "" {
		el.Value = []string{e.v}
	}
	if e.st.def != nil {
		el.Set = e.st.def.Name
	} else {
		el.Map = e.st.mapDef.Name
	}
	if e.comment != "" {
		el.Comment = knftables.PtrTo(e.comment)
	}
	return el
}

func equalStrings(a, b []string) bool { return slices.Equal(a, b) }

func (e *element) equal(o *element) bool { return e.v == o.v && e.comment == o.comment }

// tableComment marks the table as ironlb's.
const tableComment = "ironlb: LoadBalancer, NodePort and ClusterIP forwarding; rewritten by the speaker"

// fullContent is a Ruleset laid out for a full sync: chains, sets, and each set's elements (a
// shared element once), plus the count of each shared element for later incremental syncs.
type fullContent struct {
	chains []*chain
	sets   []*set
	elems  map[*set][]*element
	shared map[elemKey]int
}

func (r *Ruleset) full() *fullContent {
	parts := r.allParts()
	fc := &fullContent{chains: r.chains(parts), elems: map[*set][]*element{}, shared: map[elemKey]int{}}
	for _, p := range parts {
		fc.sets = append(fc.sets, p.sets...)
		for i := range p.elems {
			e := &p.elems[i]
			if e.st.shared {
				k := elemKey{e.st.name(), e.k}
				fc.shared[k]++
				if fc.shared[k] > 1 {
					continue
				}
			}
			fc.elems[e.st] = append(fc.elems[e.st], e)
		}
	}
	return fc
}

// writeFull queues on tx the operations that replace the whole table with r in one
// transaction: whatever a crashed or older speaker left is deleted in the same transaction that
// creates the new content, so traffic never sees an empty or half-built table. It returns the
// count of each shared element.
func (r *Ruleset) writeFull(tx *knftables.Transaction) map[elemKey]int {
	fc := r.full()
	fc.writeStructure(tx)
	for _, st := range fc.sets {
		for _, e := range fc.elems[st] {
			tx.Add(e.object())
		}
	}
	return fc.shared
}

// writeStructure queues everything writeFull does but the elements.
func (fc *fullContent) writeStructure(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})
	for _, c := range fc.chains {
		def := c.def
		tx.Add(&def)
	}
	for _, st := range fc.sets {
		tx.Add(st.object())
	}
	for _, c := range fc.chains {
		writeRules(tx, c)
	}
}

// fullText returns what writeFull's transaction becomes after joinElementAdds, its number of
// operations and the count of each shared element, without making an object per element: for
// 200,000 elements that saves a tenth of a full sync. tx provides the table's context and
// receives the structure.
func (r *Ruleset) fullText(tx *knftables.Transaction) (string, int, map[elemKey]int) {
	fc := r.full()
	fc.writeStructure(tx)
	var b strings.Builder
	structure := tx.String()
	b.Grow(len(structure) + fc.textSize())
	b.WriteString(structure)
	ops := tx.NumOperations()
	for _, st := range fc.sets {
		elems := fc.elems[st]
		if len(elems) == 0 {
			continue
		}
		b.WriteString("add element " + string(TableFamily) + " " + TableName + " " + st.name() + " { ")
		for i, e := range elems {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.k)
			if e.comment != "" {
				b.WriteString(" comment ")
				b.WriteString(strconv.Quote(e.comment))
			}
			if e.v != "" {
				b.WriteString(" : ")
				b.WriteString(e.v)
			}
		}
		b.WriteString(" }\n")
		ops += len(elems)
	}
	return b.String(), ops, fc.shared
}

// textSize is about the length of the element commands fullText writes (a little more), so
// that its buffer is allocated once: growing it from nothing copies a full sync's megabytes
// again and again.
func (fc *fullContent) textSize() int {
	n := 0
	for st, elems := range fc.elems {
		n += len("add element  {  }\n") + len(TableFamily) + len(TableName) + len(st.name())
		for _, e := range elems {
			n += len(e.k) + len(e.v) + len(", ") + len(" : ")
			if e.comment != "" {
				n += len(" comment ") + len(e.comment) + 2 + len(e.comment)/8 // quotes, some escapes
			}
		}
	}
	return n
}

func writeRules(tx *knftables.Transaction, c *chain) {
	for _, rule := range c.rules {
		tx.Add(&knftables.Rule{Chain: c.def.Name, Rule: rule})
	}
}
