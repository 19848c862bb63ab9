package speaker

import (
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Event filters, as kube-proxy's change trackers: an update the speaker's sync does not read
// (resourceVersion, managedFields, a node's heartbeat, a pool's counters, the conditions the
// controller writes on a Service, an endpoint change that leaves its Service's serving nodes
// alone) triggers nothing. Each filter compares what the planner (announcements) reads; the
// forwarding rules, which read more of Services and EndpointSlices, follow them with a change
// tracker of their own (forwarding_tracker.go). Adds and deletes always trigger, but those of
// EndpointSlices, which trigger when they change serving nodes. The ServiceAnnouncements the speakers write trigger nothing: the planner
// does not read them (a deletion of one of this node's is l2AnnouncementDeleted's or bgpAnnouncementGone's).

// changed reports whether an update of an object of some kind matters to the sync.
type changed func(old, cur any) bool

// serviceChanged: the planner reads a Service's type, class, traffic policy and ingress IPs.
func serviceChanged() changed {
	return func(o, c any) bool {
		old, cur := o.(*corev1.Service), c.(*corev1.Service)
		return old.Spec.Type != cur.Spec.Type || !reflect.DeepEqual(old.Spec.LoadBalancerClass, cur.Spec.LoadBalancerClass) ||
			old.Spec.ExternalTrafficPolicy != cur.Spec.ExternalTrafficPolicy ||
			!slices.Equal(config.IngressIPs(old), config.IngressIPs(cur))
	}
}

// servingFilter is the planner's EndpointSlice filter. The planner reads EndpointSlices only
// through config.ServingNodes (the nodes each Service's traffic may go to), so an event
// matters when it changes its Service's serving nodes: a pod replaced on the same node, an
// address, a second endpoint on a node that has one, a slice split in two are dropped. It
// keeps each Service's slices and serving nodes, so an event costs its Service's slices,
// whatever the number of Services.
type servingFilter struct {
	changes *serviceChanges // told the Services whose serving nodes changed

	mu      sync.Mutex
	slices  map[string]map[string]*discoveryv1.EndpointSlice // Service key -> slice name -> slice
	serving map[string]map[string]bool                       // Service key -> serving nodes
}

func newServingFilter(changes *serviceChanges) *servingFilter {
	return &servingFilter{changes: changes, slices: map[string]map[string]*discoveryv1.EndpointSlice{}, serving: map[string]map[string]bool{}}
}

// of returns a Service's serving nodes (Snapshot.ServingOf); ok false: none. The maps are
// replaced, never changed, so they may be shared.
func (f *servingFilter) of(key string) (nodes map[string]bool, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	nodes, ok = f.serving[key]
	return nodes, ok
}

// changed records an add (oldObj nil), update or delete (curObj nil) and reports whether it
// changed the serving nodes of a Service.
func (f *servingFilter) changed(oldObj, curObj any) bool {
	old, _ := unwrap(oldObj).(*discoveryv1.EndpointSlice)
	cur, _ := unwrap(curObj).(*discoveryv1.EndpointSlice)
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	if old != nil {
		if key := sliceService(old); key != "" {
			delete(f.slices[key], old.Name)
			keys = append(keys, key)
		}
	}
	if cur != nil {
		if key := sliceService(cur); key != "" {
			if f.slices[key] == nil {
				f.slices[key] = map[string]*discoveryv1.EndpointSlice{}
			}
			f.slices[key][cur.Name] = cur
			if !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
	}
	changed := false
	for _, key := range keys {
		now := config.ServingNodes(slices.Collect(maps.Values(f.slices[key])))[key]
		if !maps.Equal(now, f.serving[key]) {
			changed = true
			f.changes.add(key)
		}
		if len(now) == 0 {
			delete(f.serving, key)
		} else {
			f.serving[key] = now
		}
		if len(f.slices[key]) == 0 {
			delete(f.slices, key)
		}
	}
	return changed
}

// serviceChanges collects the keys of the Services whose planner inputs (the object, its
// serving nodes) changed since the sync last took them (Snapshot.Changed), so that a sync
// compares those alone. Taken before any was added, or after a sync that could not use them,
// it says "all".
type serviceChanges struct {
	mu   sync.Mutex
	keys map[string]bool
	all  bool
}

func newServiceChanges() *serviceChanges { return &serviceChanges{keys: map[string]bool{}, all: true} }

func (c *serviceChanges) add(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.keys[key] = true
	c.mu.Unlock()
}

// take returns the keys collected, and forgets them; nil means "all".
func (c *serviceChanges) take() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys, all := c.keys, c.all
	c.keys, c.all = map[string]bool{}, false
	if all {
		return nil
	}
	return keys
}

// setAll makes the next take say "all".
func (c *serviceChanges) setAll() {
	c.mu.Lock()
	c.all = true
	c.mu.Unlock()
}

// serviceEvent is the planner's Service handler: it records the Service's key when the event
// matters (an add, a delete, an update serviceChanged reports) and says whether it does.
func (c *serviceChanges) serviceEvent(changed changed) func(old, cur any) bool {
	return func(old, cur any) bool {
		if old != nil && cur != nil && !changed(old, cur) {
			return false
		}
		o := cur
		if o == nil {
			o = old
		}
		if svc, ok := unwrap(o).(*corev1.Service); ok {
			c.add(config.ServiceKey(svc.Namespace, svc.Name))
		}
		return true
	}
}

// nodeChanged: the planner reads a node's labels (selectors, exclusion); memberlist, BGP and
// the forwarding rules read its addresses, pod ranges and zone (a label). Heartbeats and
// conditions are dropped.
func nodeChanged(o, c any) bool {
	old, cur := o.(*corev1.Node), c.(*corev1.Node)
	return !maps.Equal(old.Labels, cur.Labels) || !slices.Equal(old.Status.Addresses, cur.Status.Addresses) ||
		!slices.Equal(old.Spec.PodCIDRs, cur.Spec.PodCIDRs)
}

// specChanged: of ironlb's configuration objects the planner reads the spec (its generation
// moves with it), the labels (pool selectors) and a pool's retained addresses; the counters and
// conditions the controller writes on pools are dropped.
func specChanged(o, c any) bool {
	old, cur := o.(metav1.Object), c.(metav1.Object)
	if old.GetGeneration() != cur.GetGeneration() || !maps.Equal(old.GetLabels(), cur.GetLabels()) {
		return true
	}
	if op, ok := o.(*v1alpha1.IPPool); ok {
		return !slices.Equal(op.Status.RetainedAddresses, c.(*v1alpha1.IPPool).Status.RetainedAddresses)
	}
	return false
}

// handler kicks a sync on adds, deletes and the updates that changed says matter, and counts
// the events by what they did (ironlb_speaker_watch_events_total).
func (s *Speaker) handler(resource string, changed changed) cache.ResourceEventHandler {
	return s.eventHandler(resource, func(old, cur any) bool { return old == nil || cur == nil || changed(old, cur) })
}

// eventHandler kicks a sync on the events that matters says matter (old is nil for an add,
// cur for a delete), and counts the events by what they did.
func (s *Speaker) eventHandler(resource string, matters func(old, cur any) bool) cache.ResourceEventHandler {
	count := func(old, cur any) {
		if matters(old, cur) {
			s.metrics.events.WithLabelValues(resource, "sync").Inc()
			s.kick()
			return
		}
		s.metrics.events.WithLabelValues(resource, "ignored").Inc()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { count(nil, o) },
		UpdateFunc: count,
		DeleteFunc: func(o any) { count(o, nil) },
	}
}
