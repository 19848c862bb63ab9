package l2

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// step is one input to Liveness at a time relative to t0: memberlist's view (members, "a,b"),
// a Lease renewal seen (renew, a node), or a Lease deleted (forget).
type step struct {
	at       time.Duration
	members  string
	degraded bool // memberlist finds this node degraded (with members)
	renew    string
	forget   string
}

func set(s string) map[string]bool {
	out := map[string]bool{}
	for n := range strings.SplitSeq(s, ",") {
		if n != "" {
			out[n] = true
		}
	}
	return out
}

func TestLivenessPartitions(t *testing.T) {
	cfg := DefaultLeaseConfig() // Renew 5 s, Duration 15 s, Grace 2 s
	s := time.Second
	for _, tc := range []struct {
		name  string
		steps []step
		at    time.Duration // when Alive is asked, with the last members view
		want  string
		next  time.Duration // 0: no change by time alone
	}{{
		name:  "all in memberlist: all alive, Leases or not",
		steps: []step{{at: 0, members: "a,b,c"}},
		at:    time.Minute, want: "a,b,c",
	}, {
		name:  "a death seen by the majority: at once, although the Lease is fresh",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -s, renew: "c"}, {at: 0, members: "a,b"}},
		at:    0, want: "a,b", next: 14 * s,
	}, {
		name: "a death whose last renewal arrives late (within Grace): still dead",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -s, renew: "c"}, {at: 0, members: "a,b"},
			{at: 1500 * time.Millisecond, renew: "c"}},
		at: 3 * s, want: "a,b", next: 16500 * time.Millisecond,
	}, {
		name:  "partition, majority side: a renewal after Grace keeps the cut-off node's IPs its own",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: 0, members: "a,b"}, {at: 3 * s, renew: "c"}},
		at:    4 * s, want: "a,b,c", next: 18 * s,
	}, {
		name: "partition, majority side: the cut-off node renews all along",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: 0, members: "a,b"}, {at: 3 * s, renew: "c"},
			{at: 8 * s, renew: "c"}, {at: 13 * s, renew: "c"}, {at: 18 * s, renew: "c"}},
		at: 20 * s, want: "a,b,c", next: 33 * s,
	}, {
		name:  "partition, majority side: the cut-off node dies later: its Lease goes stale",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: 0, members: "a,b"}, {at: 3 * s, renew: "c"}},
		at:    18 * s, want: "a,b",
	}, {
		name:  "partition, minority side: fresh Leases keep the others' IPs theirs at once",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -2 * s, renew: "a"}, {at: -s, renew: "b"}, {at: 0, members: "c"}},
		at:    0, want: "a,b,c", next: 13 * s,
	}, {
		name: "partition, minority side: the others keep renewing",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -s, renew: "a"}, {at: -s, renew: "b"}, {at: 0, members: "c"},
			{at: 4 * s, renew: "a"}, {at: 4 * s, renew: "b"}, {at: 9 * s, renew: "a"}, {at: 9 * s, renew: "b"}},
		at: 12 * s, want: "a,b,c", next: 24 * s,
	}, {
		name:  "partition, cut-off side, first peer declared dead: degraded, it holds at once",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -s, renew: "a"}, {at: -s, renew: "b"}, {at: 0, members: "b,c", degraded: true}},
		at:    0, want: "a,b,c", next: 14 * s,
	}, {
		name:  "a death seen by a healthy node (its helpers nacked): at once",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -s, renew: "a"}, {at: 0, members: "b,c", degraded: false}},
		at:    0, want: "b,c", next: 14 * s,
	}, {
		name:  "two nodes: degraded says nothing (no member can help a probe)",
		steps: []step{{at: -10 * s, members: "a,b"}, {at: -s, renew: "a"}, {at: 0, members: "b", degraded: true}},
		at:    0, want: "b", next: 14 * s,
	}, {
		name:  "two of three die: the survivor (a minority) takes their IPs once their Leases are stale",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -s, renew: "a"}, {at: -s, renew: "b"}, {at: 0, members: "c"}},
		at:    14 * s, want: "c",
	}, {
		name:  "partition with the API server down too: no renewal seen, memberlist alone after Duration",
		steps: []step{{at: -20 * s, members: "a,b,c"}, {at: -10 * s, renew: "a"}, {at: -10 * s, renew: "b"}, {at: 0, members: "c"}},
		at:    5 * s, want: "c",
	}, {
		name:  "API server down, no partition: memberlist's view unchanged",
		steps: []step{{at: -20 * s, renew: "a"}, {at: -20 * s, renew: "b"}, {at: -20 * s, renew: "c"}, {at: 0, members: "a,b,c"}},
		at:    5 * time.Minute, want: "a,b,c",
	}, {
		name:  "a tie (two nodes) is no minority: the death of the other is taken at once",
		steps: []step{{at: -10 * s, members: "a,b"}, {at: -s, renew: "a"}, {at: 0, members: "b"}},
		at:    0, want: "b", next: 14 * s,
	}, {
		name:  "a tie (two nodes) split: each keeps its IPs after the other's next renewal",
		steps: []step{{at: -10 * s, members: "a,b"}, {at: 0, members: "b"}, {at: 4 * s, renew: "a"}},
		at:    5 * s, want: "a,b", next: 19 * s,
	}, {
		name:  "no Leases at all (none written): memberlist alone",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: 0, members: "c"}},
		at:    0, want: "c",
	}, {
		name: "a deleted Lease (graceful shutdown) counts for nothing",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: -s, renew: "a"}, {at: -s, renew: "b"}, {at: 0, forget: "a"},
			{at: 0, forget: "b"}, {at: 0, members: "c"}},
		at: 0, want: "c",
	}, {
		name: "back in memberlist and gone again: an old proof of life does not count",
		steps: []step{{at: -10 * s, members: "a,b,c"}, {at: 0, members: "a,b"}, {at: 3 * s, renew: "c"},
			{at: 10 * s, members: "a,b,c"}, {at: 11 * s, members: "a,b"}},
		at: 11 * s, want: "a,b", next: 18 * s,
	}, {
		name:  "started during a partition: the node never seen proves life by renewing after the start",
		steps: []step{{at: 0, members: "a,b"}, {at: 4 * s, renew: "c"}},
		at:    4 * s, want: "a,b,c", next: 19 * s,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
			l := NewLiveness(cfg, t0)
			var members map[string]bool
			degraded := false
			for _, st := range tc.steps {
				now := t0.Add(st.at)
				switch {
				case st.members != "":
					members = set(st.members)
					degraded = st.degraded
					l.Alive(members, degraded, now)
				case st.renew != "":
					// A renewal Renewed says cannot matter (the speaker then skips its
					// sync) leaves the answer as it was.
					var before map[string]bool
					if members != nil {
						before, _ = l.Alive(members, degraded, now)
					}
					renewing, _ := l.Renewing(now)
					forAlive, forRenewing := l.Renewed(st.renew, now)
					if after, _ := l.Alive(members, degraded, now); !forAlive && !maps.Equal(before, after) {
						t.Errorf("renewal of %s at %v: Renewed says it cannot matter to Alive, but alive went from %v to %v", st.renew, st.at, before, after)
					}
					if after, _ := l.Renewing(now); !forRenewing && !maps.Equal(renewing, after) {
						t.Errorf("renewal of %s at %v: Renewed says it cannot matter to Renewing, but renewing went from %v to %v", st.renew, st.at, renewing, after)
					}
				case st.forget != "":
					l.Forget(st.forget)
				}
			}
			got, next := l.Alive(members, degraded, t0.Add(tc.at))
			if g := strings.Join(slices.Sorted(maps.Keys(got)), ","); g != tc.want {
				t.Errorf("alive = %s, want %s", g, tc.want)
			}
			var wantNext time.Time
			if tc.next != 0 {
				wantNext = t0.Add(tc.next)
			}
			if !next.Equal(wantNext) {
				t.Errorf("next change at %v, want %v", next.Sub(t0), tc.next)
			}
		})
	}
}

// TestLivenessRenewedMatters: a renewal of a node memberlist lists changes nothing now (the
// speaker skips its sync); one of a node it does not list, or before its first view, may.
func TestLivenessRenewedMatters(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	l := NewLiveness(DefaultLeaseConfig(), t0)
	if a, _ := l.Renewed("a", t0); !a {
		t.Error("a renewal before memberlist's first view: want it to matter")
	}
	l.Alive(set("a,b"), false, t0)
	if a, _ := l.Renewed("a", t0.Add(time.Second)); a {
		t.Error("a renewal of a member: want it not to matter")
	}
	if a, _ := l.Renewed("c", t0.Add(time.Second)); !a {
		t.Error("a renewal of a node memberlist does not list: want it to matter")
	}
	l.Alive(set("b"), false, t0.Add(2*time.Second))
	if a, _ := l.Renewed("a", t0.Add(5*time.Second)); !a {
		t.Error("a renewal of a node that left memberlist: want it to matter")
	}
}

// TestLivenessRenewing: Renewing lists the nodes with a fresh Lease whatever memberlist says, on
// the watch's clock: a node whose Lease is not renewed goes stale while the others' renewals
// keep coming, but a watch that brings nothing (this node stalled) makes no node stale.
func TestLivenessRenewing(t *testing.T) {
	s := time.Second
	t0 := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	l := NewLiveness(DefaultLeaseConfig(), t0) // renew every 5 s, stale 15 s after a renewal
	l.Alive(set("self,a"), false, t0)          // memberlist lists self and a, not c
	type step struct {
		at    time.Duration
		renew string // the renewals seen at at, comma-separated
		want  string // Renewing at at
		next  time.Duration
	}
	for i, st := range []step{
		{at: 0, renew: "self,a,c", want: "a,c,self", next: 15 * s},
		// a stops renewing; self and c go on: a is stale 15 s after its last renewal,
		// memberlist or not.
		{at: 5 * s, renew: "self,c", want: "a,c,self", next: 15 * s},
		{at: 10 * s, renew: "self,c", want: "a,c,self", next: 15 * s},
		{at: 15 * s, renew: "self,c", want: "c,self", next: 30 * s},
		// Then this node stalls: its watch brings nothing for 30 s. No node goes stale
		// beyond the latest renewal seen plus Renew, and time alone changes nothing.
		{at: 45 * s, want: "c,self", next: -1},
		// The queued renewals arrive.
		{at: 46 * s, renew: "self,c", want: "c,self", next: 61 * s},
		// a comes back.
		{at: 47 * s, renew: "a", want: "a,c,self", next: 61 * s},
	} {
		now := t0.Add(st.at)
		if st.renew != "" {
			for _, n := range strings.Split(st.renew, ",") {
				l.Renewed(n, now)
			}
		}
		got, next := l.Renewing(now)
		if g := strings.Join(slices.Sorted(maps.Keys(got)), ","); g != st.want {
			t.Errorf("step %d at %v: renewing = %s, want %s", i, st.at, g, st.want)
		}
		want := t0.Add(st.next)
		if st.next < 0 {
			want = time.Time{}
		}
		if !next.Equal(want) {
			t.Errorf("step %d at %v: next look at %v, want %v", i, st.at, next.Sub(t0), st.next)
		}
	}
	if _, r := l.Renewed("a", t0.Add(48*s)); r {
		t.Error("a member's renewal while its Lease is fresh: want it not to matter")
	}
	if _, r := l.Renewed("a", t0.Add(70*s)); !r {
		t.Error("a renewal after the Lease went stale: want it to matter (Renewing changes)")
	}
	// The watch's clock behind: a member's fresh renewal moves it on, and others go stale.
	l.Renewed("self", t0.Add(71*s))
	before, _ := l.Renewing(t0.Add(90 * s)) // self's renewal at 71 s is fresh at the clock's 76 s
	if _, r := l.Renewed("a", t0.Add(90*s)); !r {
		t.Error("a renewal that moves the watch's clock on: want it to matter")
	}
	if after, _ := l.Renewing(t0.Add(90 * s)); maps.Equal(before, after) {
		t.Errorf("renewing %v both before and after the clock moved on: want a change", after)
	}
}
