package speaker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/forward"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"
)

// TestForwarderAutoFollowsKubeProxy: with --forwarding=auto the forwarder looks for kube-proxy
// again once detectInterval has passed, removes its table when kube-proxy's rules appear, and
// rebuilds it when they go. A table left by an earlier run is removed at start when kube-proxy
// is there.
func TestForwarderAutoFollowsKubeProxy(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(forward.TableFamily, forward.TableName)
	m, err := newForwardMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	kubeProxy, detections, detectErr := true, 0, error(nil)
	now := time.Unix(1_000_000, 0)
	f := &forwarder{mode: ForwardingAuto, applier: forward.NewApplier(fake), opts: forward.DefaultOptions(), log: slog.New(slog.DiscardHandler), metrics: m,
		detect: func(context.Context) (forward.Detection, error) {
			detections++
			return forward.Detection{KubeProxy: kubeProxy, Found: []string{"nftables table ip kube-proxy"}}, detectErr
		},
		now: func() time.Time { return now },
	}
	// A table of an earlier run.
	tx := fake.NewTransaction()
	tx.Add(&knftables.Table{})
	if err := fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "198.18.0.10", Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	// A Local-policy LoadBalancer Service: its health check is served while ironlb forwards.
	hcPort := freeTCPPort(t)
	local := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "local"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "198.18.0.11", ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			HealthCheckNodePort: int32(hcPort), Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}}}}
	probe := func() (int, error) {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://127.0.0.1:" + strconv.Itoa(hcPort) + "/")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	node := forward.Node{Name: "node1", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}
	sync := func() {
		t.Helper()
		if err := f.sync(ctx, node, []*corev1.Service{svc, local}, nil); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	state := func(step string, wantTable bool, wantDetections int) {
		t.Helper()
		if got := fake.Table != nil; got != wantTable {
			t.Errorf("%s: table present %v, want %v", step, got, wantTable)
		}
		if detections != wantDetections {
			t.Errorf("%s: %d detections, want %d", step, detections, wantDetections)
		}
		if got := testutil.ToFloat64(m.enabled); got != float64(btoi(wantTable)) {
			t.Errorf("%s: forwarding_enabled %v, want %v", step, got, btoi(wantTable))
		}
		if got := testutil.ToFloat64(m.kubeProxy); got != float64(btoi(!wantTable)) {
			t.Errorf("%s: kube_proxy_detected %v", step, got)
		}
	}

	if _, err := startForwarder(ctx, f); err != nil {
		t.Fatal(err)
	}
	state("start next to kube-proxy", false, 1)
	sync()
	state("a sync before detectInterval passed", false, 1)

	kubeProxy = false
	now = now.Add(detectInterval)
	sync()
	state("kube-proxy gone", true, 2)
	if fake.Table.Chains["services"] == nil {
		t.Fatalf("taking over did not build the table:\n%s", fake.Dump())
	}

	if code, err := probe(); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("health check while forwarding, no local endpoint: %d, %v; want 503", code, err)
	}

	kubeProxy = true
	now = now.Add(detectInterval / 2)
	sync()
	state("kube-proxy back, before detectInterval passed", true, 2)
	now = now.Add(detectInterval / 2)
	sync()
	state("kube-proxy back", false, 3)
	if _, err := probe(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("health check after kube-proxy came back: %v, want connection refused (kube-proxy serves it)", err)
	}

	// A failed detection changes nothing and is retried at the next interval.
	detectErr = errors.New("nft: not found")
	now = now.Add(detectInterval)
	if err := f.sync(ctx, node, []*corev1.Service{svc, local}, nil); err == nil {
		t.Error("sync with a failing detection: no error")
	}
	state("detection failed", false, 4)
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestForwarderOffRemovesTheTable: --forwarding=off removes a table an earlier run left.
func TestForwarderOffRemovesTheTable(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(forward.TableFamily, forward.TableName)
	tx := fake.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Add(&knftables.Chain{Name: "services"})
	if err := fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	f, err := startForwarder(ctx, &forwarder{mode: ForwardingOff, applier: forward.NewApplier(fake), log: slog.New(slog.DiscardHandler)})
	if err != nil || f != nil {
		t.Fatalf("startForwarder: %v, %v; want nil, nil", f, err)
	}
	if fake.Table != nil {
		t.Errorf("table left:\n%s", fake.Dump())
	}
}

// TestForwarderMetrics: full and partial sync durations, the last sync time, and the network
// programming latency of a changed EndpointSlice (none for the slices of the first sync).
func TestForwarderMetrics(t *testing.T) {
	ctx := context.Background()
	m, err := newForwardMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	f, err := startForwarder(ctx, &forwarder{mode: ForwardingOn, applier: forward.NewApplier(knftables.NewFake(forward.TableFamily, forward.TableName)),
		opts: forward.DefaultOptions(), log: slog.New(slog.DiscardHandler), metrics: m, now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "198.18.0.10", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	epSlice := func(rv string, trigger time.Time, addrs ...string) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "uid-1", ResourceVersion: rv,
				Labels:      map[string]string{discoveryv1.LabelServiceName: "web"},
				Annotations: map[string]string{triggerTimeAnnotation: trigger.UTC().Format(time.RFC3339Nano)}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
		}
		return s
	}
	node := forward.Node{Name: "node1"}
	if err := f.sync(ctx, node, []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{epSlice("1", now.Add(-time.Hour), "198.18.1.2")}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(3 * time.Second)
	if err := f.sync(ctx, node, []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{epSlice("2", now.Add(-1500*time.Millisecond), "198.18.1.2", "198.18.1.3")}); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d sync duration series, want full and partial", n)
	}
	for _, kind := range []string{"full", "partial"} {
		if c := histogramCount(t, m.duration.WithLabelValues(kind).(prometheus.Histogram)); c != 1 {
			t.Errorf("%s syncs: %d, want 1", kind, c)
		}
	}
	if got := testutil.ToFloat64(m.lastSync); got != float64(now.Unix()) {
		t.Errorf("last sync %v, want %v", got, now.Unix())
	}
	var pm dto.Metric
	if err := m.programming.Write(&pm); err != nil {
		t.Fatal(err)
	}
	if c, sum := pm.GetHistogram().GetSampleCount(), pm.GetHistogram().GetSampleSum(); c != 1 || sum != 1.5 {
		t.Errorf("network programming latency: %d samples, sum %v; want one of 1.5 s", c, sum)
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
