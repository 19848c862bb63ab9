package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// removal tells a stopping speaker whether it stops for good: its DaemonSet was deleted (helm
// uninstall), so no speaker will run on this node again and its nftables table must go with it
// (a table nobody updates DNATs to endpoints of the past). A rolling update, a drain or a crash
// keeps the DaemonSet, and the table keeps forwarding while the next speaker starts.
//
// It watches the DaemonSet from the start: by the time the pod is told to stop, an uninstall
// has usually deleted the speaker's RBAC and ServiceAccount too, and a request then fails.
type removal struct {
	kube            kubernetes.Interface
	namespace, name string
	log             *slog.Logger
	inf             cache.SharedIndexInformer
	gone            atomic.Bool
}

// newRemoval watches the DaemonSet ref ("namespace/name"); "" watches nothing (the speaker
// then never removes its table on shutdown).
func newRemoval(kube kubernetes.Interface, ref string, log *slog.Logger) (*removal, error) {
	if ref == "" {
		return nil, nil
	}
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("daemonset %q: want namespace/name", ref)
	}
	r := &removal{kube: kube, namespace: ns, name: name, log: log}
	lw := cache.NewListWatchFromClient(kube.AppsV1().RESTClient(), "daemonsets", ns, fields.OneTermEqualSelector("metadata.name", name))
	r.inf = cache.NewSharedIndexInformer(lw, &appsv1.DaemonSet{}, 0, cache.Indexers{})
	mark := func() {
		if !r.gone.Swap(true) {
			log.Info("this speaker's DaemonSet is being deleted: its nftables table goes when it stops", "daemonset", ref)
		}
	}
	if _, err := r.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		// A foreground deletion first sets the deletion timestamp.
		UpdateFunc: func(_, obj any) {
			if ds, ok := obj.(*appsv1.DaemonSet); ok && ds.DeletionTimestamp != nil {
				mark()
			}
		},
		DeleteFunc: func(any) { mark() },
	}); err != nil {
		return nil, fmt.Errorf("event handler: %w", err)
	}
	return r, nil
}

// run watches the DaemonSet until stop closes.
func (r *removal) run(stop <-chan struct{}) { r.inf.Run(stop) }

// removed reports whether the DaemonSet is gone or being deleted: seen so by the watch, or by a
// last look now (which fails, and keeps the table, when the speaker's access is gone already).
func (r *removal) removed(ctx context.Context) bool {
	if r == nil {
		return false
	}
	if r.gone.Load() {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ds, err := r.kube.AppsV1().DaemonSets(r.namespace).Get(ctx, r.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true
	case err != nil:
		r.log.Warn("cannot tell whether this speaker's DaemonSet still exists; keeping the nftables table", "err", err)
		return false
	}
	return ds.DeletionTimestamp != nil
}
