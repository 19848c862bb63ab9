package forward

import (
	"reflect"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// Ruleset is the desired content of ironlb's table as plain data: chains with their rules, and
// sets and maps with their elements. [Render] builds it and nothing changes it afterwards, so
// it may be kept and compared; an [Applier] turns it into nftables transactions.
type Ruleset struct {
	chains     []*chain // in creation order: base chains first
	chainIndex map[string]*chain
	sets       []*set // sets and maps, in creation order
	setIndex   map[string]*set
	groups     []*group // the elements of each Service port, in render order
	groupIndex map[string]*group
}

// group is the elements one Service port added, with a hash of them: an incremental sync
// compares hashes and diffs the elements of changed groups only, so its cost follows the size
// of the change, not of the table.
type group struct {
	key  string // namespace/name/protocol/port
	hash uint64 // FNV-1a over the elements' set names, keys, values and comments
	refs []elementRef
}

type elementRef struct {
	st *set
	i  int
}

func (g *group) element(r elementRef) *element { return &r.st.elems[r.i] }

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

// set is a set or a map (exactly one of def and mapDef is non-nil) with its elements in
// insertion order.
type set struct {
	def    *knftables.Set
	mapDef *knftables.Map
	elems  []element
	index  map[string]int // joined key -> position in elems
}

// element is a set or map element with its key and value already joined with " . ", which is
// how knftables writes a concatenation: a Ruleset of 200,000 elements is then 3 strings each
// for the garbage collector to scan rather than 2 slices of strings.
type element struct {
	k       string // key, also the index key
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

func newRuleset() *Ruleset {
	return &Ruleset{chainIndex: map[string]*chain{}, setIndex: map[string]*set{}, groupIndex: map[string]*group{}}
}

// startGroup starts recording the elements of a Service port; addTo adds to it.
func (r *Ruleset) startGroup(key string) *group {
	g := r.groupIndex[key]
	if g == nil {
		g = &group{key: key, hash: fnvOffset}
		r.groups = append(r.groups, g)
		r.groupIndex[key] = g
	}
	return g
}

// addTo adds an element to st as add does and records it in g.
func (g *group) addTo(st *set, k, v, comment string) {
	if !st.add(k, v, comment) {
		return
	}
	g.refs = append(g.refs, elementRef{st: st, i: len(st.elems) - 1})
	g.hash = fnvAdd(fnvAdd(fnvAdd(fnvAdd(g.hash, st.name()), k), v), comment)
}

// Stats returns the number of chains, rules, sets (and maps) and elements.
func (r *Ruleset) Stats() Stats {
	s := Stats{Chains: len(r.chains), Sets: len(r.sets)}
	for _, c := range r.chains {
		s.Rules += len(c.rules)
	}
	for _, st := range r.sets {
		s.Elements += len(st.elems)
	}
	return s
}

// addChain adds a chain with the given rules, or appends the rules if it exists.
func (r *Ruleset) addChain(def knftables.Chain, rules ...string) {
	c := r.chainIndex[def.Name]
	if c == nil {
		c = &chain{def: def}
		r.chains = append(r.chains, c)
		r.chainIndex[def.Name] = c
	}
	c.rules = append(c.rules, rules...)
}

func (r *Ruleset) hasChain(name string) bool { return r.chainIndex[name] != nil }

func (r *Ruleset) addSet(def knftables.Set) *set {
	st := &set{def: &def, index: map[string]int{}}
	r.sets = append(r.sets, st)
	r.setIndex[def.Name] = st
	return st
}

func (r *Ruleset) addMap(def knftables.Map) *set {
	st := &set{mapDef: &def, index: map[string]int{}}
	r.sets = append(r.sets, st)
	r.setIndex[def.Name] = st
	return st
}

// reserve makes room for n more elements.
func (st *set) reserve(n int) {
	if n <= 0 {
		return
	}
	index := make(map[string]int, len(st.index)+n)
	for k, v := range st.index {
		index[k] = v
	}
	st.index = index
	st.elems = append(make([]element, 0, len(st.elems)+n), st.elems...)
}

// add adds an element with key k and value v (both joined with " . ") and reports whether it
// did: the first element with a given key wins.
func (st *set) add(k, v, comment string) bool {
	if _, dup := st.index[k]; dup {
		return false
	}
	st.index[k] = len(st.elems)
	st.elems = append(st.elems, element{k: k, v: v, comment: comment})
	return true
}

// has reports whether the set has an element whose joined key is k.
func (st *set) has(k string) bool {
	_, ok := st.index[k]
	return ok
}

func (st *set) name() string {
	if st.def != nil {
		return st.def.Name
	}
	return st.mapDef.Name
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

// elementObject returns the knftables element for e in st. Key and Value hold one joined
// string each; knftables writes them joined with " . " either way.
func (st *set) elementObject(e *element) *knftables.Element {
	el := &knftables.Element{Key: []string{e.k}}
	if e.v != "" {
		el.Value = []string{e.v}
	}
	if st.def != nil {
		el.Set = st.def.Name
	} else {
		el.Map = st.mapDef.Name
	}
	if e.comment != "" {
		el.Comment = knftables.PtrTo(e.comment)
	}
	return el
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (e *element) equal(o *element) bool { return e.v == o.v && e.comment == o.comment }

// tableComment marks the table as ironlb's.
const tableComment = "ironlb: LoadBalancer, NodePort and ClusterIP forwarding; rewritten by the speaker"

// writeFull queues on tx the operations that replace the whole table with r in one
// transaction: whatever a crashed or older speaker left is deleted in the same transaction that
// creates the new content, so traffic never sees an empty or half-built table.
func (r *Ruleset) writeFull(tx *knftables.Transaction) {
	r.writeFullStructure(tx)
	for _, st := range r.sets {
		for i := range st.elems {
			tx.Add(st.elementObject(&st.elems[i]))
		}
	}
}

// writeFullStructure queues everything writeFull does but the elements.
func (r *Ruleset) writeFullStructure(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})
	for _, c := range r.chains {
		def := c.def
		tx.Add(&def)
	}
	for _, st := range r.sets {
		tx.Add(st.object())
	}
	for _, c := range r.chains {
		writeRules(tx, c)
	}
}

// fullText returns what writeFull's transaction becomes after joinElementAdds, and its
// number of operations, without making an object per element: for 200,000 elements that
// saves a tenth of a full sync. tx provides the table's context and receives the structure.
func (r *Ruleset) fullText(tx *knftables.Transaction) (string, int) {
	r.writeFullStructure(tx)
	var b strings.Builder
	b.WriteString(tx.String())
	ops := tx.NumOperations()
	for _, st := range r.sets {
		if len(st.elems) == 0 {
			continue
		}
		b.WriteString("add element " + string(TableFamily) + " " + TableName + " " + st.name() + " { ")
		for i := range st.elems {
			e := &st.elems[i]
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
		ops += len(st.elems)
	}
	return b.String(), ops
}

func writeRules(tx *knftables.Transaction, c *chain) {
	for _, rule := range c.rules {
		tx.Add(&knftables.Rule{Chain: c.def.Name, Rule: rule})
	}
}
