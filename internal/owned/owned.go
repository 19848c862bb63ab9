// Package owned keeps the API objects a component owns equal to a desired set. It is the one
// writer behind the speaker's ServiceAnnouncements and BGPSessionStates, and it runs off the
// data path: Set never blocks and never talks to the API server; Run writes in its own
// goroutine, every request bounded by a timeout, failures retried with backoff. An API server
// that is slow, throttled or unreachable delays status objects, never ARP answers, BGP paths or
// nftables rules.
//
// Run lists what earlier runs left (Client.List) and prunes what is not desired, so a
// restarted component neither duplicates nor leaks objects. Writes do not wait for that list:
// a pass whose list fails (a slow API server at a cluster's start, when every node lists at
// once) still creates and updates what it knows of, and the next passes list again until one
// succeeds; only pruning what it did not write waits for the list. A pass skips what a Set made
// while it ran no longer wants as it was: the next pass writes the new desired set.
package owned

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Client reaches the objects of one kind. Keys are "namespace/name" (or "name" for
// cluster-scoped objects); the reconciler never parses them.
type Client[T any] interface {
	// List returns the objects this component owns now, by key.
	List(ctx context.Context) (map[string]T, error)
	// Create creates obj and returns what the server stored.
	Create(ctx context.Context, obj T) (T, error)
	// Update replaces cur (which carries the resource version) with obj's content and
	// returns what the server stored.
	Update(ctx context.Context, cur, obj T) (T, error)
	// Delete deletes obj; a NotFound error counts as done, a Conflict (obj changed since it
	// was written) makes the reconciler list again.
	Delete(ctx context.Context, obj T) error
}

// Options tune a Reconciler. DefaultOptions gives every value with its reason.
type Options[T any] struct {
	// Key returns an object's key. Required.
	Key func(T) string
	// Same reports whether a written object already says what a desired one says; an
	// object that is the same is not written again. Required.
	Same func(written, desired T) bool
	// Timeout bounds each request: a black-holed API server costs one timeout per pass, not
	// a stuck writer.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed pass is retried; it doubles
	// from the first to the second while passes keep failing.
	MinBackoff, MaxBackoff time.Duration
	// Log receives one line per failed pass; default slog.Default().
	Log *slog.Logger
}

// DefaultOptions returns the defaults: requests time out after 10 s (client-go sets none),
// and retries start after 500 ms and back off to 30 s.
func DefaultOptions[T any]() Options[T] {
	return Options[T]{Timeout: 10 * time.Second, MinBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second}
}

// Reconciler keeps a Client's objects equal to the last desired set. New wires it; Run runs it.
type Reconciler[T any] struct {
	client Client[T]
	opts   Options[T]
	kick   chan struct{}

	mu        sync.Mutex
	desired   map[string]T
	sets      uint64   // Set calls so far: a pass skips what a later Set changed
	forgotten []string // keys deleted by someone else, for the next pass

	// Owned by Run's goroutine (and Flush, which runs after Run or instead of it).
	written map[string]T // what the server holds, as far as we know
	listed  bool         // written is what a list returned, and the writes since
	tried   bool         // a list was tried: later ones come after the writes, not before
}

// New returns a reconciler with nothing desired. It starts nothing.
func New[T any](c Client[T], o Options[T]) *Reconciler[T] {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Reconciler[T]{client: c, opts: o, kick: make(chan struct{}, 1), desired: map[string]T{}, written: map[string]T{}}
}

// Set makes objs the desired set. It returns at once; Run writes.
func (r *Reconciler[T]) Set(objs []T) {
	d := make(map[string]T, len(objs))
	for _, o := range objs {
		d[r.opts.Key(o)] = o
	}
	r.mu.Lock()
	r.desired = d
	r.sets++
	r.mu.Unlock()
	r.wake()
}

// latest returns what the current desired set holds for key, and whether Set was called since
// the pass that read sets began.
func (r *Reconciler[T]) latest(sets uint64, key string) (obj T, ok, superseded bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	obj, ok = r.desired[key]
	return obj, ok, r.sets != sets
}

// Forget tells the reconciler that the object with key was deleted by someone else, so the
// next pass writes it again if it is desired.
func (r *Reconciler[T]) Forget(key string) {
	r.mu.Lock()
	r.forgotten = append(r.forgotten, key)
	r.mu.Unlock()
	r.wake()
}

func (r *Reconciler[T]) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run writes until ctx ends: a pass after every Set or Forget, and after a failed pass once
// its backoff has passed.
func (r *Reconciler[T]) Run(ctx context.Context) {
	backoff := time.Duration(0)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-retry:
		}
		retry = nil
		if err := r.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, r.opts.MinBackoff), r.opts.MaxBackoff)
			r.opts.Log.Warn("writing status objects; retrying", "in", backoff, "err", err)
			retry = time.After(backoff)
			continue
		}
		backoff = 0
	}
}

// Flush runs one pass now, in the caller's goroutine, for a caller that stops (with Run
// already ended): Set(nil) then Flush removes every object.
func (r *Reconciler[T]) Flush(ctx context.Context) error {
	return r.pass(ctx)
}

// pass brings the written objects in line with the desired ones. Until a list succeeds it
// writes what it knows of and prunes only what it wrote itself. Once Set has replaced the
// desired set under it, a pass skips the writes and deletes the new set no longer wants as they
// were (Set has queued the next pass, which does what it wants): against a slow API server a
// pass of thousands of writes would go on writing what is no longer wanted for minutes (the
// 50 x 5,000 scale benchmark: two speakers wrote their first plan's objects, listing 2 of 50
// nodes, long after every other speaker and their own plans had moved on). It skips, not
// stops: with Set called on every sync, a pass that stopped might never reach its deletes.
func (r *Reconciler[T]) pass(ctx context.Context) error {
	r.mu.Lock()
	desired, forgotten, sets := r.desired, r.forgotten, r.sets
	r.forgotten = nil
	r.mu.Unlock()
	var errs []error
	list := func() {
		lctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		listed, err := r.client.List(lctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing what earlier runs wrote: %w", err))
			return
		}
		r.written, r.listed = listed, true
	}
	// The first list comes before the writes (a restart finds its objects and rewrites none);
	// a list again (the first failed, or a write found its object changed) after them, so that
	// a slow list does not delay them.
	relist := !r.listed && r.tried
	if !r.listed && !r.tried {
		r.tried = true
		list()
	}
	for _, k := range forgotten {
		delete(r.written, k)
	}
	stale := false
	for key, obj := range desired {
		cur, ok := r.written[key]
		if ok && r.opts.Same(cur, obj) {
			continue
		}
		if now, ok, superseded := r.latest(sets, key); superseded && (!ok || !r.opts.Same(obj, now)) {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		var out T
		var err error
		if ok {
			out, err = r.client.Update(wctx, cur, obj)
		} else {
			out, err = r.client.Create(wctx, obj)
		}
		cancel()
		if err != nil {
			// Someone else wrote or deleted it, or a create failed without saying whether the
			// server stored the object (a timeout, a request cancelled at shutdown): list again
			// before the retry, so that nothing created is left out of written (and never pruned).
			if !ok || apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				stale = true
			}
			if ok && (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) {
				// What written holds of it is out of date: the next pass creates it (a client
				// with TakeOver updates what it finds), so a list that keeps failing does not
				// keep this key failing too. Pruning it, should it stop being desired, waits
				// for a list like anything else this run did not write.
				delete(r.written, key)
			}
			errs = append(errs, fmt.Errorf("writing %s: %w", key, err))
			continue
		}
		r.written[key] = out
	}
	if relist {
		list()
	}
	for key, cur := range r.written {
		if _, ok := desired[key]; ok {
			continue
		}
		if _, ok, superseded := r.latest(sets, key); superseded && ok {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		err := r.client.Delete(dctx, cur)
		cancel()
		if apierrors.IsConflict(err) {
			// Changed since written (another writer took it over, or someone edited it): list
			// again, and delete it then if it is still this component's.
			stale = true
			continue
		}
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", key, err))
			continue
		}
		delete(r.written, key)
	}
	if stale {
		r.listed = false
	}
	return errors.Join(errs...)
}
