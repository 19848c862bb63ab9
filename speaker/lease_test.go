package speaker

import (
	"context"
	"encoding/base64"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
)

// TestLeaseCarriesReach: a speaker's Lease carries what it publishes of its L2 reach, the
// other speakers read it from their Lease informer, and a new process does not renew with
// the reach an earlier run of it wrote (before its first sync it has published nothing).
func TestLeaseCarriesReach(t *testing.T) {
	c, ns := clients(t)
	newSpeaker := func(node string) *Speaker {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.Namespace, cfg.MetricsAddr = node, ns, ""
		reg := prometheus.NewRegistry()
		s, err := New(cfg, cluster(t), reg, reg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leases := c.Kube.CoordinationV1().Leases(ns)

	// An earlier run of node1 left "cannot answer" on its Lease.
	none, _ := EncodeMeta(Reach{reachKeyOf("pool", netip.MustParseAddr("192.0.2.10")): ReachNone}, nil)
	a := newSpeaker("node1")
	old := a.newLease(metav1.NewMicroTime(time.Now()))
	old.Annotations = map[string]string{AnnotationL2Meta: base64.StdEncoding.EncodeToString(none)}
	if _, err := leases.Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	b := newSpeaker("node2")
	_, synced, stop := b.startInformers(ctx)
	defer stop()
	if !cache.WaitFor(ctx, "", synced...) {
		t.Fatal("informers not synced")
	}
	seen := func(want []byte) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			got, ok := b.leaseMetas.get("node1")
			return ok == (want != nil) && string(got) == string(want), nil
		})
		if err != nil {
			got, _ := b.leaseMetas.get("node1")
			t.Fatalf("node2 reads node1's reach as %v, want %v", got, want)
		}
	}
	seen(none)

	// The new process renews before it has published: the old reach is gone.
	cur, err := a.renewOnce(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := cur.Annotations[AnnotationL2Meta]; ok {
		t.Fatalf("first renewal kept the earlier run's reach %q", v)
	}
	seen(nil)

	// It publishes a reach: the next renewal carries it.
	a.published.Store(&none)
	if _, err := a.renewOnce(ctx, cur); err != nil {
		t.Fatal(err)
	}
	seen(none)

	// Deleted (the speaker shut down): forgotten.
	if err := leases.Delete(ctx, leaseName("node1"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	seen(nil)
}
