package speaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/ironlb/ironlb/api/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

// LabelNode marks the ServiceAnnouncements a speaker writes, so it can find (and prune) its own.
const LabelNode = v1alpha1.GroupName + "/node"

// statusWriter keeps one ServiceAnnouncement per Service this node announces.
type statusWriter struct {
	crd  rest.Interface
	node string
	log  *slog.Logger

	mu      sync.Mutex
	written map[string]*v1alpha1.ServiceAnnouncement // by namespace/name of the object
}

// forget drops an object someone else deleted (another node reaping what it took for a dead
// node's), so the next sync writes it again.
func (w *statusWriter) forget(namespace, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.written, namespace+"/"+name)
}

// announcementName names the object of a (Service, node, mode): "<service>.<node>.<mode>",
// e.g. web.node-1.l2. The name is injective: a Service name is a DNS label (no dot), so the
// first dot ends it; the mode ("l2", "bgp") has no dot, so the last dot starts it; the node
// name, which may hold dots and dashes, is what lies between.
func announcementName(service, node string, mode v1alpha1.AnnouncementMode) string {
	return truncateName(service + "." + node + "." + strings.ToLower(string(mode)))
}

// sessionStateName names the BGPSessionState of a (node, peer): "<node>.<peer>-<hash>", e.g.
// node-1.router-a-5d41402abc. Node and BGPPeer names may both hold dots and dashes, so no
// separator alone keeps two pairs apart ("a.b" + "c" and "a" + "b.c"); the hash of the pair
// (joined with "/", which neither name may contain) does.
func sessionStateName(node, peer string) string {
	sum := sha256.Sum256([]byte(node + "/" + peer))
	suffix := "-" + hex.EncodeToString(sum[:5])
	readable := node + "." + peer
	if len(readable)+len(suffix) > 253 {
		readable = strings.TrimRight(readable[:253-len(suffix)], ".-")
	}
	return readable + suffix
}

// truncateName keeps an object name within 253 characters: a longer one is cut and suffixed
// with a hash of the whole, so it stays unique.
func truncateName(name string) string {
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:253-17], ".-") + "-" + hex.EncodeToString(sum[:8])
}

// prune deletes this node's announcements left by an earlier run; sync writes them again.
func (w *statusWriter) prune(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var list v1alpha1.ServiceAnnouncementList
	sel := labels.Set{LabelNode: w.node}.String()
	if err := w.crd.Get().Resource("serviceannouncements").Param("labelSelector", sel).Do(ctx).Into(&list); err != nil {
		return fmt.Errorf("listing ServiceAnnouncements: %w", err)
	}
	w.written = map[string]*v1alpha1.ServiceAnnouncement{}
	for i := range list.Items {
		a := &list.Items[i]
		w.written[a.Namespace+"/"+a.Name] = a
	}
	return nil
}

// sync makes this node's ServiceAnnouncements match the plan (a zero Plan: none).
func (w *statusWriter) sync(ctx context.Context, p Plan) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.written == nil {
		w.written = map[string]*v1alpha1.ServiceAnnouncement{}
	}
	desired := map[string]*v1alpha1.ServiceAnnouncement{}
	for mode, announced := range map[v1alpha1.AnnouncementMode]map[string]*Announced{
		v1alpha1.AnnouncementL2: p.Services, v1alpha1.AnnouncementBGP: p.BGPServices,
	} {
		for _, a := range announced {
			obj := &v1alpha1.ServiceAnnouncement{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: a.Namespace, Name: announcementName(a.Name, w.node, mode),
					Labels: map[string]string{LabelNode: w.node},
				},
				ServiceName: a.Name, NodeName: w.node, Mode: mode, Interfaces: a.Interfaces, Peers: a.Peers,
			}
			for _, ip := range a.IPs {
				obj.IPs = append(obj.IPs, ip.String())
			}
			desired[obj.Namespace+"/"+obj.Name] = obj
		}
	}
	var errs []error
	for key, obj := range desired {
		old := w.written[key]
		if old != nil && slices.Equal(old.IPs, obj.IPs) && slices.Equal(old.Interfaces, obj.Interfaces) && slices.Equal(old.Peers, obj.Peers) {
			continue
		}
		var err error
		var out v1alpha1.ServiceAnnouncement
		if old == nil {
			err = w.crd.Post().Namespace(obj.Namespace).Resource("serviceannouncements").Body(obj).Do(ctx).Into(&out)
			if apierrors.IsAlreadyExists(err) {
				var cur v1alpha1.ServiceAnnouncement
				if err = w.crd.Get().Namespace(obj.Namespace).Resource("serviceannouncements").Name(obj.Name).Do(ctx).Into(&cur); err == nil {
					old = &cur
				}
			}
		}
		if old != nil && err == nil {
			obj.ResourceVersion = old.ResourceVersion
			err = w.crd.Put().Namespace(obj.Namespace).Resource("serviceannouncements").Name(obj.Name).Body(obj).Do(ctx).Into(&out)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("writing ServiceAnnouncement %s: %w", key, err))
			delete(w.written, key) // re-read on the next attempt
			continue
		}
		w.written[key] = &out
	}
	for key, old := range w.written {
		if desired[key] != nil {
			continue
		}
		err := w.crd.Delete().Namespace(old.Namespace).Resource("serviceannouncements").Name(old.Name).Do(ctx).Error()
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting ServiceAnnouncement %s: %w", key, err))
			continue
		}
		delete(w.written, key)
	}
	return errors.Join(errs...)
}
