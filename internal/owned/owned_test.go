package owned

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// obj is a test object: a key, a value and the version the fake server gave it.
type obj struct {
	key, value string
	version    int
}

// fakeServer is a Client with an API server's semantics for one kind: versions, conflicts,
// AlreadyExists, NotFound. hang makes every call wait for its context (a black-holed API
// server); fail makes every call fail at once.
type fakeServer struct {
	mu      sync.Mutex
	objs    map[string]obj
	version int
	writes  []string // "create k", "update k", "delete k"
	hang    bool
	fail    error
	// listFail makes List alone fail.
	listFail error
	// lostReply makes a create succeed on the server but fail for the client (a timeout or a
	// cancelled request after the server stored the object).
	lostReply bool
	// beforeWrite, when set, runs once before the next create, update or delete (in the
	// caller's goroutine).
	beforeWrite func()
}

var _ Client[obj] = (*fakeServer)(nil)

var gr = schema.GroupResource{Group: "test", Resource: "objs"}

func (f *fakeServer) write(ctx context.Context) error {
	if h := f.beforeWrite; h != nil {
		f.beforeWrite = nil
		h()
	}
	return f.call(ctx)
}

func (f *fakeServer) call(ctx context.Context) error {
	f.mu.Lock()
	hang, fail := f.hang, f.fail
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return fail
}

func (f *fakeServer) List(ctx context.Context) (map[string]obj, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listFail != nil {
		return nil, f.listFail
	}
	return maps.Clone(f.objs), nil
}

func (f *fakeServer) Create(ctx context.Context, o obj) (obj, error) {
	if err := f.write(ctx); err != nil {
		return obj{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.objs[o.key]; ok {
		return obj{}, apierrors.NewAlreadyExists(gr, o.key)
	}
	f.version++
	o.version = f.version
	f.objs[o.key] = o
	f.writes = append(f.writes, "create "+o.key)
	if f.lostReply {
		return obj{}, context.DeadlineExceeded
	}
	return o, nil
}

func (f *fakeServer) Update(ctx context.Context, cur, o obj) (obj, error) {
	if err := f.write(ctx); err != nil {
		return obj{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.objs[o.key]
	switch {
	case !ok:
		return obj{}, apierrors.NewNotFound(gr, o.key)
	case have.version != cur.version:
		return obj{}, apierrors.NewConflict(gr, o.key, errors.New("version changed"))
	}
	f.version++
	o.version = f.version
	f.objs[o.key] = o
	f.writes = append(f.writes, "update "+o.key)
	return o, nil
}

func (f *fakeServer) Delete(ctx context.Context, o obj) error {
	if err := f.write(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.objs[o.key]; !ok {
		return apierrors.NewNotFound(gr, o.key)
	}
	delete(f.objs, o.key)
	f.writes = append(f.writes, "delete "+o.key)
	return nil
}

// state returns key=value of every object, sorted, and the writes so far.
func (f *fakeServer) state() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []string
	for k, o := range f.objs {
		s = append(s, k+"="+o.value)
	}
	slices.Sort(s)
	return s, slices.Clone(f.writes)
}

// set changes the fake's behaviour.
func (f *fakeServer) set(hang bool, fail error) {
	f.mu.Lock()
	f.hang, f.fail = hang, fail
	f.mu.Unlock()
}

// someoneElse writes directly, as another client would.
func (f *fakeServer) someoneElse(key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version++
	f.objs[key] = obj{key: key, value: value, version: f.version}
}

func newFake(existing ...obj) *fakeServer {
	f := &fakeServer{objs: map[string]obj{}}
	for _, o := range existing {
		f.someoneElse(o.key, o.value)
	}
	return f
}

func testOptions() Options[obj] {
	o := DefaultOptions[obj]()
	o.Key = func(x obj) string { return x.key }
	o.Same = func(w, d obj) bool { return w.value == d.value }
	o.Timeout, o.MinBackoff, o.MaxBackoff = 50*time.Millisecond, 10*time.Millisecond, 40*time.Millisecond
	return o
}

func objs(kv ...string) []obj {
	var out []obj
	for i := 0; i < len(kv); i += 2 {
		out = append(out, obj{key: kv[i], value: kv[i+1]})
	}
	return out
}

func TestFlushWritesTheDifference(t *testing.T) {
	for _, tc := range []struct {
		name              string
		existing, desired []obj
		wantState         []string
		wantWrites        []string
	}{
		{"nothing to nothing", nil, nil, nil, nil},
		{"creates what is missing", nil, objs("a", "1"), []string{"a=1"}, []string{"create a"}},
		{"an equal object is not written again", objs("a", "1"), objs("a", "1"), []string{"a=1"}, nil},
		{"a changed object is updated", objs("a", "1"), objs("a", "2"), []string{"a=2"}, []string{"update a"}},
		{"what an earlier run left is pruned", objs("old", "1", "a", "1"), objs("a", "1"), []string{"a=1"}, []string{"delete old"}},
		{"an empty desired set removes everything", objs("a", "1", "b", "2"), nil, nil, []string{"delete a", "delete b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(tc.existing...)
			r := New[obj](f, testOptions())
			r.Set(tc.desired)
			if err := r.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			state, writes := f.state()
			slices.Sort(writes)
			if !slices.Equal(state, tc.wantState) || !slices.Equal(writes, tc.wantWrites) {
				t.Errorf("state %v writes %v; want %v and %v", state, writes, tc.wantState, tc.wantWrites)
			}
		})
	}
}

// A black-holed API server never blocks Set (the data path); Run keeps retrying with its
// timeout and backoff, and catches up when the server answers again.
func TestSetNeverWaitsForTheServer(t *testing.T) {
	f := newFake()
	f.set(true, nil)
	r := New[obj](f, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	start := time.Now()
	for i := range 1000 {
		r.Set(objs("a", strconv.Itoa(i)))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("1,000 Set calls against a hanging server took %v", d)
	}
	f.set(false, nil)
	waitFor(t, f, []string{"a=999"})
}

// Someone else deletes or changes an object: Forget makes the next pass write it again, and
// a conflict or AlreadyExists makes the reconciler list again and retry.
func TestOthersWritesAreRepaired(t *testing.T) {
	f := newFake()
	r := New[obj](f, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	r.Set(objs("a", "1", "b", "1"))
	waitFor(t, f, []string{"a=1", "b=1"})

	if err := f.Delete(context.Background(), obj{key: "a"}); err != nil {
		t.Fatal(err)
	}
	r.Forget("a")
	waitFor(t, f, []string{"a=1", "b=1"})

	f.someoneElse("b", "changed") // our next update of b conflicts
	r.Set(objs("a", "1", "b", "2"))
	waitFor(t, f, []string{"a=1", "b=2"})

	f.someoneElse("c", "other") // created behind our back: our create meets AlreadyExists
	r.Set(objs("a", "1", "b", "2", "c", "3"))
	waitFor(t, f, []string{"a=1", "b=2", "c=3"})
}

// Failures are retried until they stop, with the backoff growing to its maximum.
func TestFailuresAreRetried(t *testing.T) {
	f := newFake()
	f.set(false, errors.New("throttled"))
	r := New[obj](f, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	r.Set(objs("a", "1"))
	time.Sleep(100 * time.Millisecond) // a few failed passes (not an assertion: waitFor is)
	f.set(false, nil)
	waitFor(t, f, []string{"a=1"})
}

// A create whose reply was lost (timed out or cancelled after the server stored the object,
// as when shutdown stops Run mid-request) must not leave the object behind: Flush removes it.
func TestFlushRemovesWhatALostReplyCreated(t *testing.T) {
	f := newFake()
	r := New[obj](f, testOptions())
	r.Set(objs("a", "1"))
	if err := r.Flush(context.Background()); err != nil { // lists: written is known
		t.Fatal(err)
	}
	f.mu.Lock()
	f.lostReply = true
	f.mu.Unlock()
	r.Set(objs("a", "1", "b", "1"))
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("a lost reply reported no error")
	}
	f.mu.Lock()
	f.lostReply = false
	f.mu.Unlock()
	r.Set(nil)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if state, writes := f.state(); len(state) != 0 {
		t.Fatalf("state %v after Set(nil) and Flush, want nothing (writes %v)", state, writes)
	}
}

func waitFor(t *testing.T, f *fakeServer, want []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		state, writes := f.state()
		if slices.Equal(state, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %v after 5 s, want %v (writes %v)", state, want, writes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An API server too slow to list (as at a cluster's start, when every node lists at once)
// does not hold the writes back: a pass whose list fails still creates what is desired, and
// what an earlier run left is pruned once a list succeeds.
func TestWritesDoNotWaitForTheList(t *testing.T) {
	f := newFake(objs("old", "1")...)
	f.listFail = errors.New("the server was unable to return a response in the time allotted")
	r := New[obj](f, testOptions())
	r.Set(objs("a", "1"))
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("a failed list reported no error")
	}
	if state, _ := f.state(); !slices.Equal(state, []string{"a=1", "old=1"}) {
		t.Fatalf("state %v after a pass whose list failed, want a written and old left", state)
	}
	r.Set(objs("a", "2", "b", "1"))
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("a failed list reported no error")
	}
	if state, _ := f.state(); !slices.Equal(state, []string{"a=2", "b=1", "old=1"}) {
		t.Fatalf("state %v, want a updated, b created, old left", state)
	}
	f.mu.Lock()
	f.listFail = nil
	f.mu.Unlock()
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	state, writes := f.state()
	if !slices.Equal(state, []string{"a=2", "b=1"}) || writes[len(writes)-1] != "delete old" {
		t.Fatalf("state %v writes %v once the list succeeds, want old pruned and nothing else written", state, writes)
	}
}

// A write that finds its object changed or gone while the list keeps failing is not retried
// from what the reconciler last knew (a Conflict or NotFound every pass until a list
// succeeds): the next pass creates it.
func TestStaleWritesHealWithoutTheList(t *testing.T) {
	f := newFake()
	r := New[obj](f, testOptions())
	r.Set(objs("a", "1"))
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.listFail = errors.New("the server was unable to return a response in the time allotted")
	delete(f.objs, "a") // deleted by someone else, and no Forget
	f.mu.Unlock()
	r.Set(objs("a", "2"))
	for range 2 {
		_ = r.Flush(context.Background())
	}
	if state, writes := f.state(); !slices.Equal(state, []string{"a=2"}) {
		t.Fatalf("state %v writes %v, want a written again while the list fails", state, writes)
	}
}

// A pass skips the writes a Set made while it ran replaced, and the next pass writes the new
// desired set: what is no longer wanted as it was is neither written nor pruned.
func TestAPassFollowsANewDesiredSet(t *testing.T) {
	set := func(value string, keys ...string) []obj {
		var out []obj
		for _, k := range keys {
			out = append(out, obj{key: k, value: value})
		}
		return out
	}
	keys := []string{"a", "b", "c", "d", "e", "f"}
	f := newFake(set("kept", "x")...) // an earlier run's object: old and new want it
	r := New[obj](f, testOptions())
	r.Set(append(set("old", keys...), set("kept", "x")...))
	f.beforeWrite = func() { r.Set(set("new", keys...)) } // and x is no longer wanted
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if state, writes := f.state(); len(writes) != 1 || len(state) != 2 {
		t.Fatalf("after the pass whose desired set was replaced: state %v, writes %v; want the one write begun before", state, writes)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	state, writes := f.state()
	if want := []string{"a=new", "b=new", "c=new", "d=new", "e=new", "f=new"}; !slices.Equal(state, want) {
		t.Errorf("after the next pass: state %v, want %v (writes %v)", state, want, writes)
	}
	if len(writes) != 1+len(keys)+1 {
		t.Errorf("writes %v: want the first pass's one, one per key and x's delete", writes)
	}
}

// With Set called before every write (a sync after each change, the desired set changing each
// time), every pass still makes progress and prunes what nothing wants.
func TestPassesProgressWhileSetKeepsComing(t *testing.T) {
	f := newFake(obj{key: "z", value: "left by an earlier run"})
	r := New[obj](f, testOptions())
	n := 0
	var again func()
	again = func() {
		n++
		r.Set(objs("a", strconv.Itoa(n), "b", "1"))
		f.beforeWrite = again
	}
	r.Set(objs("a", "0", "b", "1"))
	f.beforeWrite = again
	for range 3 {
		if err := r.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	state, writes := f.state()
	if slices.ContainsFunc(state, func(s string) bool { return s[0] == 'z' }) || !slices.Contains(state, "b=1") {
		t.Errorf("state %v after three passes (writes %v): want z pruned and b written", state, writes)
	}
}
