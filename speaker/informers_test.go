package speaker

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"
)

// TestInformersStop: the informers a speaker starts, its Lease informer included, stop when
// asked, so a speaker told to stop exits. (Waiting for the Lease informers before cancelling
// them kept every speaker with a Lease namespace, the chart's, running after SIGTERM.)
func TestInformersStop(t *testing.T) {
	_, ns := clients(t)
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Namespace, cfg.MetricsAddr = "node1", ns, ""
	reg := prometheus.NewRegistry()
	s, err := New(cfg, cluster(t), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, synced, stop := s.startInformers(ctx)
	if !cache.WaitFor(ctx, "", synced...) {
		t.Fatal("informers not synced within a minute")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the informers did not stop within 30 s")
	}
}
