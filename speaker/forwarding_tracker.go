package speaker

import (
	"fmt"
	"sync"
	"time"

	"github.com/ironlb/ironlb/forward"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// changeTracker follows the Services and EndpointSlices for the forwarder, as kube-proxy's
// change trackers do: its event handlers drop updates that change nothing the rules read
// (forward.SameService, forward.SameEndpointSlice), index the EndpointSlices by Service, and
// mark the Services that changed, so that a sync renders those alone.
type changeTracker struct {
	services corelisters.ServiceLister
	changed  chan struct{}       // signalled when a Service is marked
	synced   []cache.DoneChecker // done when the handlers have seen the informers' initial lists

	mu       sync.Mutex
	slices   map[string]map[string]*discoveryv1.EndpointSlice // Service key -> slice name -> slice
	dirty    map[string]bool
	triggers []time.Time // trigger times of the slice changes marked
}

// newChangeTracker registers the tracker's handlers on the factory's Service and
// EndpointSlice informers. Registered before the factory starts, the tracker indexes each
// object as the informers list it; its synced channels close once its handlers have seen every
// object of the initial lists.
func newChangeTracker(factory informers.SharedInformerFactory) (*changeTracker, error) {
	t := newTracker(factory.Core().V1().Services().Lister())
	svcReg, err := factory.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.serviceEvent(nil, o) },
		UpdateFunc: t.serviceEvent,
		DeleteFunc: func(o any) { t.serviceEvent(o, nil) },
	})
	if err != nil {
		return nil, fmt.Errorf("forwarding: Service event handler: %w", err)
	}
	sliceReg, err := factory.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.sliceEvent(nil, o) },
		UpdateFunc: t.sliceEvent,
		DeleteFunc: func(o any) { t.sliceEvent(o, nil) },
	})
	if err != nil {
		return nil, fmt.Errorf("forwarding: EndpointSlice event handler: %w", err)
	}
	t.synced = []cache.DoneChecker{svcReg.HasSyncedChecker(), sliceReg.HasSyncedChecker()}
	return t, nil
}

// newTracker returns a tracker reading Services from services, fed by nothing yet.
func newTracker(services corelisters.ServiceLister) *changeTracker {
	return &changeTracker{
		services: services,
		changed:  make(chan struct{}, 1),
		slices:   map[string]map[string]*discoveryv1.EndpointSlice{},
		dirty:    map[string]bool{},
	}
}

func unwrap(o any) any {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

func (t *changeTracker) serviceEvent(oldObj, newObj any) {
	old, _ := unwrap(oldObj).(*corev1.Service)
	cur, _ := unwrap(newObj).(*corev1.Service)
	if old != nil && cur != nil && forward.SameService(old, cur) {
		return
	}
	svc := cur
	if svc == nil {
		svc = old
	}
	if svc == nil {
		return
	}
	t.mu.Lock()
	t.dirty[svc.Namespace+"/"+svc.Name] = true
	t.mu.Unlock()
	t.signal()
}

func (t *changeTracker) sliceEvent(oldObj, newObj any) {
	old, _ := unwrap(oldObj).(*discoveryv1.EndpointSlice)
	cur, _ := unwrap(newObj).(*discoveryv1.EndpointSlice)
	same := old != nil && cur != nil && forward.SameEndpointSlice(old, cur)
	t.mu.Lock()
	if old != nil {
		if key := sliceService(old); key != "" {
			delete(t.slices[key], old.Name)
			if len(t.slices[key]) == 0 {
				delete(t.slices, key)
			}
			if !same {
				t.dirty[key] = true
			}
		}
	}
	if cur != nil {
		if key := sliceService(cur); key != "" {
			if t.slices[key] == nil {
				t.slices[key] = map[string]*discoveryv1.EndpointSlice{}
			}
			t.slices[key][cur.Name] = cur
			if !same {
				t.dirty[key] = true
				if tt, ok := triggerTime(cur); ok {
					t.triggers = append(t.triggers, tt)
				}
			}
		}
	}
	t.mu.Unlock()
	if !same {
		t.signal()
	}
}

// sliceService returns the key of the Service an EndpointSlice belongs to, or "".
func sliceService(s *discoveryv1.EndpointSlice) string {
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return ""
	}
	return s.Namespace + "/" + name
}

func (t *changeTracker) signal() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// take returns the Services marked and the trigger times of their slice changes, and clears
// them.
func (t *changeTracker) take() ([]string, []time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.dirty))
	for k := range t.dirty {
		keys = append(keys, k)
	}
	clear(t.dirty)
	triggers := t.triggers
	t.triggers = nil
	return keys, triggers
}

// retry marks keys again after a failed sync, and signals.
func (t *changeTracker) retry(keys []string, triggers []time.Time) {
	t.mu.Lock()
	for _, k := range keys {
		t.dirty[k] = true
	}
	t.triggers = append(triggers, t.triggers...)
	t.mu.Unlock()
	time.AfterFunc(time.Second, t.signal)
}

// dropTriggers forgets the trigger times recorded so far.
func (t *changeTracker) dropTriggers() {
	t.mu.Lock()
	t.triggers = nil
	t.mu.Unlock()
}

// service returns the Service of key from the informer's store, or nil.
func (t *changeTracker) service(key string) *corev1.Service {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := t.services.Services(ns).Get(name)
	if err != nil {
		return nil
	}
	return svc
}

// slicesOf returns the EndpointSlices of a Service.
func (t *changeTracker) slicesOf(key string) []*discoveryv1.EndpointSlice {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*discoveryv1.EndpointSlice, 0, len(t.slices[key]))
	for _, s := range t.slices[key] {
		out = append(out, s)
	}
	return out
}
