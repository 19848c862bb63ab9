package speaker

import (
	"maps"
	"reflect"
	"slices"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Event filters, as kube-proxy's change trackers: an update the speaker's sync does not read
// (resourceVersion, managedFields, a node's heartbeat, a pool's counters, the conditions the
// controller writes on a Service) triggers nothing. Each filter compares what the planner
// (announcements) reads; the forwarding rules, which read more of Services and EndpointSlices,
// follow them with a change tracker of their own (forwarding_tracker.go). Adds and deletes
// always trigger. The ServiceAnnouncements the speakers write trigger nothing: the planner
// does not read them (a deletion of one of this node's is announcementDeleted's).

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

// sliceChanged: the planner reads which Service a slice is of, its family and ports (the
// readiness rule's groups), and each endpoint's node and conditions.
func sliceChanged() changed {
	return func(o, c any) bool {
		old, cur := o.(*discoveryv1.EndpointSlice), c.(*discoveryv1.EndpointSlice)
		if old.Labels[discoveryv1.LabelServiceName] != cur.Labels[discoveryv1.LabelServiceName] || old.AddressType != cur.AddressType ||
			!reflect.DeepEqual(old.Ports, cur.Ports) || len(old.Endpoints) != len(cur.Endpoints) {
			return true
		}
		for i := range old.Endpoints {
			a, b := &old.Endpoints[i], &cur.Endpoints[i]
			if !reflect.DeepEqual(a.NodeName, b.NodeName) || config.ConditionsOf(a.Conditions) != config.ConditionsOf(b.Conditions) {
				return true
			}
		}
		return false
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
	kick := func() {
		s.metrics.events.WithLabelValues(resource, "sync").Inc()
		s.kick()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { kick() },
		UpdateFunc: func(old, cur any) {
			if changed(old, cur) {
				kick()
				return
			}
			s.metrics.events.WithLabelValues(resource, "ignored").Inc()
		},
		DeleteFunc: func(any) { kick() },
	}
}
