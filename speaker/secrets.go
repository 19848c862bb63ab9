package speaker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// secretTTL is how often a password Secret is read again: the speaker may only get Secrets by
// name (no list or watch, see the chart's RBAC), so a changed password reaches its session
// within this time.
const secretTTL = 30 * time.Second

// secretTimeout bounds one read; an unreachable API server keeps the password read before.
const secretTimeout = 5 * time.Second

// errSecretNotRead is what a Secret asked for the first time gives until its first read.
var errSecretNotRead = errors.New("not read yet")

// secretCache holds the password Secrets the BGPPeers name, read off the data path: get never
// talks to the API server, it returns what the last read gave; run reads each Secret when it is
// first asked for and every secretTTL after, and calls changed when what a read gave changed,
// so a plan runs with it. With the API server black-holed, plans go on with the passwords read
// before, at once.
//
// A read that fails for any reason but the Secret's absence (the API server unreachable,
// throttled or timing out) keeps the last data read: an API outage must not take down the
// sessions it protects. Only a Secret that is gone (NotFound) or changed changes the session.
// With nothing read before, the error stands: a session never opens without its password.
type secretCache struct {
	kube    kubernetes.Interface
	log     *slog.Logger
	changed func()

	mu      sync.Mutex
	entries map[string]*secretEntry // by namespace/name: the Secrets wanted
	wake    chan struct{}
}

type secretEntry struct {
	ns, name string
	data     map[string][]byte
	err      error     // errSecretNotRead until the first read
	at       time.Time // of the last read attempt; zero: never
}

func newSecretCache(kube kubernetes.Interface, log *slog.Logger, changed func()) *secretCache {
	return &secretCache{kube: kube, log: log, changed: changed, entries: map[string]*secretEntry{}, wake: make(chan struct{}, 1)}
}

// get returns what the last read of Secret ns/name gave, and has it read when it never was.
func (c *secretCache) get(ns, name string) (map[string][]byte, error) {
	key := ns + "/" + name
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		c.entries[key] = &secretEntry{ns: ns, name: name, err: errSecretNotRead}
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return nil, errSecretNotRead
	}
	return e.data, e.err
}

// keep forgets the Secrets not in keys (namespace/name): no BGPPeer names them any more.
func (c *secretCache) keep(keys map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.entries, func(k string, _ *secretEntry) bool { return !keys[k] })
}

// run reads the Secrets wanted until ctx ends.
func (c *secretCache) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		next := c.refresh(ctx, false)
		t.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-t.C:
		}
	}
}

// refresh reads the Secrets never read or read secretTTL ago or more (all of them with force),
// one at a time, and returns when the next is due.
func (c *secretCache) refresh(ctx context.Context, force bool) time.Time {
	now := time.Now()
	next := now.Add(secretTTL)
	var due []*secretEntry
	c.mu.Lock()
	for _, e := range c.entries {
		if at := e.at.Add(secretTTL); force || e.at.IsZero() || !at.After(now) {
			due = append(due, &secretEntry{ns: e.ns, name: e.name})
		} else if at.Before(next) {
			next = at
		}
	}
	c.mu.Unlock()
	changed := false
	for _, d := range due {
		gctx, cancel := context.WithTimeout(ctx, secretTimeout)
		sec, err := c.kube.CoreV1().Secrets(d.ns).Get(gctx, d.name, metav1.GetOptions{})
		cancel()
		c.mu.Lock()
		if e := c.entries[d.ns+"/"+d.name]; e != nil {
			changed = c.update(e, sec.Data, err) || changed
		}
		c.mu.Unlock()
	}
	if changed && c.changed != nil {
		c.changed()
	}
	return next
}

// update applies a read's result to e (c.mu held) and reports whether what get returns changed.
func (c *secretCache) update(e *secretEntry, data map[string][]byte, err error) bool {
	e.at = time.Now()
	switch {
	case err == nil:
	case apierrors.IsNotFound(err) || e.err != nil:
		data = nil
	default:
		c.log.Warn("cannot read a BGP password Secret; keeping the password read before", "secret", e.ns+"/"+e.name, "err", err)
		return false
	}
	changed := !maps.EqualFunc(e.data, data, bytes.Equal) || errText(e.err) != errText(err)
	e.data, e.err = data, err
	return changed
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
