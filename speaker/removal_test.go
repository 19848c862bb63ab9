package speaker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
)

func TestRemovalRef(t *testing.T) {
	for _, ref := range []string{"speaker", "/speaker", "ironlb-system/", "a/b/c"} {
		if _, err := newRemoval(nil, ref, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("newRemoval(%q): no error", ref)
		}
	}
	r, err := newRemoval(nil, "", nil)
	if err != nil || r != nil || r.removed(context.Background()) {
		t.Errorf("newRemoval(\"\") = %v, %v; want nil, never removed", r, err)
	}
}

// TestRemovalFollowsTheDaemonSet: a speaker stops for good only once its DaemonSet is deleted;
// the watch has seen it so even when the speaker can no longer ask.
func TestRemovalFollowsTheDaemonSet(t *testing.T) {
	c, ns := clients(t)
	ctx := t.Context()
	labels := map[string]string{"app": "speaker"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "speaker"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "speaker", Image: "speaker"}}},
			},
		},
	}
	if _, err := c.Kube.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := newRemoval(c.Kube, ns+"/speaker", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go r.run(stop)
	if !cache.WaitForCacheSync(ctx.Done(), r.inf.HasSynced) {
		t.Fatal("the DaemonSet watch did not sync")
	}
	if r.removed(ctx) {
		t.Fatal("removed while the DaemonSet exists")
	}
	// Another DaemonSet's deletion is not this speaker's.
	other := ds.DeepCopy()
	other.Name = "other"
	if _, err := c.Kube.AppsV1().DaemonSets(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Kube.AppsV1().DaemonSets(ns).Delete(ctx, "other", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Kube.AppsV1().DaemonSets(ns).Delete(ctx, "speaker", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return r.gone.Load(), nil
	})
	if err != nil {
		t.Fatal("the watch did not see the DaemonSet deleted")
	}
	// Without the watch, a last look finds it gone.
	fresh, _ := newRemoval(c.Kube, ns+"/speaker", slog.New(slog.DiscardHandler))
	if !fresh.removed(ctx) {
		t.Error("a deleted DaemonSet is not reported removed")
	}
}
