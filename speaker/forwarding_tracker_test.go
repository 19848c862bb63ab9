package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/forward"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/knftables"
)

// TestForwarderSyncsChangedServicesOnly: with the change tracker, an EndpointSlice update that
// changes nothing the rules read is dropped, and a real one is synced by the forwarder's own
// loop, rendering that Service alone and observing its network programming latency once.
func TestForwarderSyncsChangedServicesOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	for i := range 20 {
		name := fmt.Sprintf("svc-%02d", i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("198.18.0.%d", 10+i), Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
		if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, trackedSlice(name, time.Time{}, fmt.Sprintf("198.18.1.%d", 10+i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	svcLister, sliceLister := factory.Core().V1().Services().Lister(), factory.Discovery().V1().EndpointSlices().Lister()
	tracker, err := newChangeTracker(factory) // before the start, as the speaker does
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	if !cache.WaitFor(ctx, "", tracker.synced...) {
		t.Fatal("the tracker did not sync")
	}

	m, err := newForwardMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	nft := knftables.NewFake(forward.TableFamily, forward.TableName)
	f, err := startForwarder(ctx, &forwarder{mode: ForwardingOn, applier: forward.NewApplier(nft), tracker: tracker, opts: forward.DefaultOptions(),
		log: slog.New(slog.DiscardHandler), metrics: m, now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	go f.run(ctx)
	svcs, _ := svcLister.List(labels.Everything())
	slices, _ := sliceLister.List(labels.Everything())
	if err := f.sync(ctx, forward.Node{Name: "node1"}, svcs, slices); err != nil {
		t.Fatal(err)
	}

	// Metadata only: dropped.
	noop := trackedSlice("svc-03", time.Now(), "198.18.1.13")
	noop.Labels["unrelated"] = "label"
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, noop, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A new endpoint.
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, trackedSlice("svc-07", time.Now(), "198.18.1.17", "198.18.1.99"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(nft.Dump(), "198.18.1.99 . 8080") {
		if time.Now().After(deadline) {
			t.Fatalf("the new endpoint was not programmed:\n%s", nft.Dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	rendered := f.renderer.LastRendered()
	f.mu.Unlock()
	if rendered != 1 {
		t.Errorf("the sync of one changed slice rendered %d Services, want 1", rendered)
	}
	if c := histogramCount(t, m.programming); c != 1 {
		t.Errorf("network programming latency: %d samples, want 1 (the no-op update dropped)", c)
	}
	if c := histogramCount(t, m.duration.WithLabelValues("partial").(prometheus.Histogram)); c != 1 {
		t.Errorf("partial syncs: %d, want 1", c)
	}
}

func trackedSlice(svc string, trigger time.Time, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	if !trigger.IsZero() {
		s.Annotations = map[string]string{triggerTimeAnnotation: trigger.UTC().Format(time.RFC3339Nano)}
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	return s
}
