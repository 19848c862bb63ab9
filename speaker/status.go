package speaker

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/internal/owned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

// LabelNode marks the ServiceAnnouncements a speaker writes (its own in L2, the Services it
// reports for in BGP), so it can find (and prune) its own. LabelMode gives an announcement's
// mode, so that a speaker watches every L2 one (probing and reaping read them) but of the BGP
// ones its own alone: a BGP object lists up to every node, and every node watching every one
// is nodes x Services of cache and watch events.
const (
	LabelNode = v1alpha1.GroupName + "/node"
	LabelMode = v1alpha1.GroupName + "/mode"
)

// announcementName names the object of a (Service, node) in L2, "<service>.<node>.l2" (e.g.
// web.node-1.l2), and of a Service in BGP, "<service>.bgp" (one for all its nodes). The name
// is injective: a Service name is a DNS label (no dot), so the first dot ends it; the mode
// ("l2", "bgp") has no dot, so the last dot starts it; the node name, which may hold dots and
// dashes, is what lies between, and a BGP name has nothing between.
func announcementName(service, node string, mode v1alpha1.AnnouncementMode) string {
	if mode == v1alpha1.AnnouncementBGP {
		return service + ".bgp"
	}
	return truncateName(service + "." + node + "." + strings.ToLower(string(mode)))
}

// sessionStateName names the BGPSessionState of a (node, peer): "<node>.<peer>-<hash>", e.g.
// node-1.router-a-5d41402abc. Node and BGPPeer names may both hold dots and dashes, so no
// separator alone keeps two pairs apart ("a.b" + "c" and "a" + "b.c"); the hash of the pair
// (joined with "/", which neither name may contain) does.
func sessionStateName(node, peer string) string {
	sum := sha256.Sum256([]byte(node + "/" + peer))
	suffix := "-" + hex.EncodeToString(sum[:5])
	readable := node + "." + peer
	if len(readable)+len(suffix) > 253 {
		readable = strings.TrimRight(readable[:253-len(suffix)], ".-")
	}
	return readable + suffix
}

// truncateName keeps an object name within 253 characters: a longer one is cut and suffixed
// with a hash of the whole, so it stays unique.
func truncateName(name string) string {
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:253-17], ".-") + "-" + hex.EncodeToString(sum[:8])
}

// Status objects go through owned.Reconciler: written off the data path, with a timeout per
// request and backoff, and what an earlier run left is pruned on the first pass (old-named
// objects included: they carry the node label).

func newAnnouncementWriter(crd rest.Interface, node string, log *slog.Logger) *owned.Reconciler[*v1alpha1.ServiceAnnouncement] {
	o := owned.DefaultOptions[*v1alpha1.ServiceAnnouncement]()
	o.Key = func(a *v1alpha1.ServiceAnnouncement) string { return owned.Key(a) }
	o.Same = func(w, d *v1alpha1.ServiceAnnouncement) bool {
		return w.ServiceName == d.ServiceName && w.NodeName == d.NodeName && w.Mode == d.Mode && slices.Equal(w.Nodes, d.Nodes) &&
			slices.Equal(w.IPs, d.IPs) && slices.Equal(w.Interfaces, d.Interfaces) && slices.Equal(w.Peers, d.Peers) &&
			slices.Equal(w.ConflictedIPs, d.ConflictedIPs) && sameConditions(w.Conditions, d.Conditions) &&
			maps.Equal(w.Labels, d.Labels)
	}
	o.Log = log.With("kind", "ServiceAnnouncement")
	return owned.New(owned.REST[*v1alpha1.ServiceAnnouncement, *v1alpha1.ServiceAnnouncementList]{
		Client: crd, Resource: "serviceannouncements", Namespaced: true, Selector: labels.Set{LabelNode: node}.String(), TakeOver: true,
		NewObject: func() *v1alpha1.ServiceAnnouncement { return &v1alpha1.ServiceAnnouncement{} },
		NewList:   func() *v1alpha1.ServiceAnnouncementList { return &v1alpha1.ServiceAnnouncementList{} },
		Items:     func(l *v1alpha1.ServiceAnnouncementList) []*v1alpha1.ServiceAnnouncement { return ptrs(l.Items) },
	}, o)
}

func newSessionWriter(crd rest.Interface, node string, log *slog.Logger) *owned.Reconciler[*v1alpha1.BGPSessionState] {
	o := owned.DefaultOptions[*v1alpha1.BGPSessionState]()
	o.Key = func(s *v1alpha1.BGPSessionState) string { return owned.Key(s) }
	o.Same = sameSession
	o.Log = log.With("kind", "BGPSessionState")
	return owned.New(owned.REST[*v1alpha1.BGPSessionState, *v1alpha1.BGPSessionStateList]{
		// Named after this node: only its earlier runs wrote one of that name.
		Client: crd, Resource: "bgpsessionstates", Selector: labels.Set{LabelNode: node}.String(), TakeOver: true,
		NewObject: func() *v1alpha1.BGPSessionState { return &v1alpha1.BGPSessionState{} },
		NewList:   func() *v1alpha1.BGPSessionStateList { return &v1alpha1.BGPSessionStateList{} },
		Items:     func(l *v1alpha1.BGPSessionStateList) []*v1alpha1.BGPSessionState { return ptrs(l.Items) },
	}, o)
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// statusCache builds the ServiceAnnouncements node writes for a plan: per mode, what its
// target reports (L2: one per Service it answers for; BGP: one per Service it reports for,
// listing every node that announces it). The writer's label marks them as node's. It keeps the
// object it built for each Announced, so a Service whose Announced did not change keeps its
// object, and a plan whose targets did not change gives the same slice.
type statusCache struct {
	modes map[v1alpha1.AnnouncementMode]*modeStatus
	out   []*v1alpha1.ServiceAnnouncement
}

// modeStatus is what statusCache built for one mode's target.
type modeStatus struct {
	target Target
	built  map[string]builtStatus // per Service key
	objs   []*v1alpha1.ServiceAnnouncement
	keys   []string // the key of each of objs
}

type builtStatus struct {
	from  *Announced
	obj   *v1alpha1.ServiceAnnouncement
	index int // in objs
}

func (c *statusCache) announcements(node string, p Plan) []*v1alpha1.ServiceAnnouncement {
	modes := make(map[v1alpha1.AnnouncementMode]*modeStatus, len(p.Targets))
	same := c.out != nil && len(c.modes) == len(p.Targets)
	for _, t := range p.Targets {
		mode := t.Mode()
		m := c.modes[mode]
		modes[mode] = m
		if m != nil && m.target == t {
			continue
		}
		same = false
		if d, ok := t.(diffed); ok && m != nil {
			if base, keys := d.diff(); base == m.target {
				for _, key := range keys {
					m.update(node, mode, key, t.Reported()[key])
				}
				m.target = t
				continue
			}
		}
		fresh := &modeStatus{target: t, built: make(map[string]builtStatus, len(t.Reported()))}
		for key, a := range t.Reported() {
			if b, ok := m.reuse(key, a); ok {
				fresh.add(key, b.from, b.obj)
			} else {
				fresh.update(node, mode, key, a)
			}
		}
		modes[mode] = fresh
	}
	if same {
		return c.out
	}
	c.modes, c.out = modes, []*v1alpha1.ServiceAnnouncement{}
	for _, t := range p.Targets {
		c.out = append(c.out, modes[t.Mode()].objs...)
	}
	return c.out
}

// reuse returns what m built from a, if it did.
func (m *modeStatus) reuse(key string, a *Announced) (builtStatus, bool) {
	if m == nil {
		return builtStatus{}, false
	}
	b, ok := m.built[key]
	return b, ok && b.from == a
}

// update makes m hold a's object for key (a nil: none).
func (m *modeStatus) update(node string, mode v1alpha1.AnnouncementMode, key string, a *Announced) {
	b, ok := m.built[key]
	switch {
	case ok && b.from == a:
	case ok && a == nil:
		last := len(m.objs) - 1
		m.objs[b.index], m.keys[b.index] = m.objs[last], m.keys[last]
		moved := m.built[m.keys[b.index]]
		moved.index = b.index
		m.built[m.keys[b.index]] = moved
		m.objs, m.keys = m.objs[:last], m.keys[:last]
		delete(m.built, key)
	case ok:
		b.from, b.obj = a, announcementObject(node, mode, a)
		m.objs[b.index] = b.obj
		m.built[key] = b
	case a != nil:
		m.add(key, a, announcementObject(node, mode, a))
	}
}

func (m *modeStatus) add(key string, a *Announced, obj *v1alpha1.ServiceAnnouncement) {
	m.built[key] = builtStatus{from: a, obj: obj, index: len(m.objs)}
	m.objs, m.keys = append(m.objs, obj), append(m.keys, key)
}

// announcementObject is the ServiceAnnouncement node writes of a in mode.
func announcementObject(node string, mode v1alpha1.AnnouncementMode, a *Announced) *v1alpha1.ServiceAnnouncement {
	obj := &v1alpha1.ServiceAnnouncement{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: a.Namespace, Name: announcementName(a.Name, node, mode),
			Labels: map[string]string{LabelNode: node, LabelMode: strings.ToLower(string(mode))},
		},
		ServiceName: a.Name, Mode: mode, Interfaces: a.Interfaces, Peers: a.Peers, Nodes: a.Nodes,
	}
	if a.Nodes == nil {
		obj.NodeName = node
	}
	for _, ip := range a.IPs {
		obj.IPs = append(obj.IPs, ip.String())
	}
	return obj
}

// announcements returns the ServiceAnnouncements node writes for a plan (statusCache's, built
// from scratch).
func announcements(node string, p Plan) []*v1alpha1.ServiceAnnouncement {
	return (&statusCache{}).announcements(node, p)
}
