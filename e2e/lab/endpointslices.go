package lab

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// managedBy marks the EndpointSlices the lab writes in place of kube-controller-manager.
const managedBy = "lab.ironlb.io"

// startEndpointSlices runs a small stand-in for the EndpointSlice controller: for every Service
// with a selector it keeps one slice per IP family listing the selected pods with ready, serving
// and terminating conditions derived from the Pod as the real controller does.
func (l *Lab) startEndpointSlices(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(l.Client, 0)
	svcs, pods := factory.Core().V1().Services(), factory.Core().V1().Pods()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueueNS := func(ns string) {
		list, _ := svcs.Lister().Services(ns).List(labels.Everything())
		for _, s := range list {
			queue.Add(s.Namespace + "/" + s.Name)
		}
	}
	if _, err := svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { key, _ := cache.MetaNamespaceKeyFunc(o); queue.Add(key) },
		UpdateFunc: func(_, o any) { key, _ := cache.MetaNamespaceKeyFunc(o); queue.Add(key) },
		DeleteFunc: func(o any) { key, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(o); queue.Add(key) },
	}); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	podNS := func(o any) {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		if p, ok := o.(*corev1.Pod); ok {
			enqueueNS(p.Namespace)
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podNS, UpdateFunc: func(_, o any) { podNS(o) }, DeleteFunc: podNS,
	}); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("lab: cache for %v did not sync", typ)
		}
	}
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		<-ctx.Done()
		queue.ShutDown()
		factory.Shutdown()
	}()
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		for {
			key, quit := queue.Get()
			if quit {
				return
			}
			if err := l.syncSlices(ctx, key, svcs.Lister(), pods.Lister()); err != nil && ctx.Err() == nil {
				l.log.Warn("lab: writing EndpointSlices", "service", key, "err", err)
				queue.AddRateLimited(key)
			} else {
				queue.Forget(key)
			}
			queue.Done(key)
		}
	}()
	return nil
}

func (l *Lab) syncSlices(ctx context.Context, key string, svcs corelisters.ServiceLister, pods corelisters.PodLister) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	client := l.Client.DiscoveryV1().EndpointSlices(ns)
	svc, err := svcs.Services(ns).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && len(svc.Spec.Selector) == 0) {
		// No garbage collector runs here: remove the slices the Service owned.
		sel := labels.Set{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: managedBy}.String()
		return client.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel})
	}
	if err != nil {
		return err
	}
	selected, err := pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	for _, fam := range families {
		want := desiredSlice(svc, selected, fam)
		old, err := client.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = client.Create(ctx, want, metav1.CreateOptions{})
		case err == nil:
			want.ResourceVersion = old.ResourceVersion
			_, err = client.Update(ctx, want, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("slice %s: %w", want.Name, err)
		}
	}
	return nil
}

func desiredSlice(svc *corev1.Service, pods []*corev1.Pod, fam corev1.IPFamily) *discoveryv1.EndpointSlice {
	addrType := discoveryv1.AddressTypeIPv4
	if fam == corev1.IPv6Protocol {
		addrType = discoveryv1.AddressTypeIPv6
	}
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s-lab-%s", svc.Name, map[corev1.IPFamily]string{corev1.IPv4Protocol: "v4", corev1.IPv6Protocol: "v6"}[fam]),
			Namespace: svc.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   managedBy,
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}},
		},
		AddressType: addrType,
	}
	for _, sp := range svc.Spec.Ports {
		port := sp.TargetPort
		var num int32
		switch {
		case port.Type == intstr.String:
			num = namedPort(pods, port.StrVal, sp.Protocol)
		case port.IntVal != 0:
			num = port.IntVal
		default:
			num = sp.Port
		}
		if num == 0 {
			continue
		}
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &sp.Name, Protocol: &sp.Protocol, Port: &num})
	}
	for _, p := range pods {
		ip := podIP(p, fam)
		if !ip.IsValid() || p.Status.Phase != corev1.PodRunning {
			continue
		}
		terminating := p.DeletionTimestamp != nil
		serving := podReady(p)
		ready := serving && !terminating
		node := p.Spec.NodeName
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			NodeName:   &node,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		})
	}
	return s
}

func namedPort(pods []*corev1.Pod, name string, proto corev1.Protocol) int32 {
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == name && cp.Protocol == proto {
					return cp.ContainerPort
				}
			}
		}
	}
	return 0
}

func podIP(p *corev1.Pod, fam corev1.IPFamily) netip.Addr {
	for _, pip := range p.Status.PodIPs {
		a, err := netip.ParseAddr(pip.IP)
		if err == nil && a.Is4() == (fam == corev1.IPv4Protocol) {
			return a
		}
	}
	return netip.Addr{}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
