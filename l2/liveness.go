package l2

import (
	"sync"
	"time"
)

// Liveness decides which nodes count as alive for the owner election, from two sources:
// memberlist (fast, but blind across a partition of its port) and the speakers' Leases in the
// API server (slow, but reachable from both sides of such a partition). The README ("Partitions")
// explains the rule; in short, a node memberlist does not list counts as alive when
//
//   - a renewal of its Lease was seen at least LeaseConfig.Grace after it left memberlist (it
//     is alive, only cut off from this node's gossip: its IPs stay its own), while the Lease
//     is fresh; or
//   - this node sees fewer than half of the known nodes in memberlist (it is on the minority
//     side of a partition, or most nodes died at once: it cannot tell which), or memberlist
//     says this node itself is degraded (its failed probes got no nack from the members it
//     asked to help, Lifeguard's local health: the others are as unreachable as the probed
//     one; counted with three known nodes or more, below which no member can help), while the
//     node's Lease is fresh. A node cut off so claims nothing that a fresh Lease covers, even
//     while memberlist has declared only some of the others dead.
//
// A node that dies stops renewing, so the majority side takes its IPs as fast as memberlist
// detects the death; the Lease only ever adds nodes to memberlist's view. With the API server
// unreachable no renewal is seen, Leases go stale after LeaseConfig.Duration and the election
// is memberlist's alone, as without Leases.
//
// Liveness is I/O-free: the speaker feeds it renewals (Renewed) and memberlist's view (Alive);
// times come from the caller. It is safe for concurrent use.
type Liveness struct {
	cfg   LeaseConfig
	start time.Time

	mu      sync.Mutex
	members map[string]bool      // memberlist's last view
	gone    map[string]time.Time // when a node left memberlist, as this node saw it
	renewed map[string]time.Time // when a renewal of a node's Lease was last seen
	latest  time.Time            // the latest renewal seen of any Lease, this node's included
}

// LeaseConfig tunes the Lease side of Liveness. DefaultLeaseConfig gives every value with its
// reason.
type LeaseConfig struct {
	// Renew is how often a speaker renews its Lease: each renewal is one API write per node,
	// and a partitioned node's IPs are answered twice for up to about Renew+Grace (until the
	// majority side sees a renewal it must respect).
	Renew time.Duration
	// Duration is how long a renewal keeps a node alive when memberlist does not list it:
	// after a real death, the minority side (and the majority side, if a renewal proved life
	// just before) waits this long before taking the node's IPs.
	Duration time.Duration
	// Grace is how long after a node left memberlist a renewal must be seen to prove it alive:
	// a renewal written just before a death but seen a little late (watch latency) must not
	// bring a dead node back.
	Grace time.Duration
}

// DefaultLeaseConfig: renew every 5 s (one write per node every 5 s; kubelets renew their
// Leases every 10 s), stale after three missed renewals (15 s), and a renewal proves life when
// seen 2 s or more after memberlist lost the node (memberlist detects a death in under a
// second; a watch event is late by far less than 2 s on a healthy API server).
func DefaultLeaseConfig() LeaseConfig {
	return LeaseConfig{Renew: 5 * time.Second, Duration: 15 * time.Second, Grace: 2 * time.Second}
}

// NewLiveness returns a Liveness that knows no Lease yet; start is when this node started
// watching (a node never seen in memberlist counts as gone since then).
func NewLiveness(cfg LeaseConfig, start time.Time) *Liveness {
	return &Liveness{cfg: cfg, start: start, members: map[string]bool{}, gone: map[string]time.Time{}, renewed: map[string]time.Time{}}
}

// Renewed records that node's Lease was seen renewed at at (when the watch delivered it), and
// reports whether that can change Alive's answer (only when memberlist's last view does not
// list the node) and Renewing's (only when the node's Lease had gone stale or was never seen,
// or the watch's clock was behind: moving it on can make other Leases stale). A member's
// renewals matter to Alive once it leaves memberlist, and Alive reads them then; with every
// speaker renewing every few seconds, acting on each would redo the election N/Renew times a
// second on every node.
func (l *Liveness) Renewed(node string, at time.Time) (alive, renewing bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, seen := l.renewed[node]
	if at.After(last) {
		l.renewed[node] = at
	}
	behind := l.latest.Add(l.cfg.Renew).Before(at)
	if at.After(l.latest) {
		l.latest = at
	}
	return !l.members[node], behind || !seen || !last.Add(l.cfg.Duration).After(at)
}

// Renewing returns the nodes whose Lease was seen renewed within Duration, and when that may
// change by time alone (zero: not by time). Unlike Alive it ignores memberlist: it answers who
// is running, for uses that need the same answer on every node more than a fast one (a BGP
// Service's reporter: every node reads the same Leases, while memberlist's views differ for a
// moment whenever a probe is late).
//
// Time is the watch's, not the wall clock's: a Lease is stale when it was not renewed for
// Duration before now or before Renew after the latest renewal seen (of any Lease, this node's
// own included, which it renews every Renew), whichever is earlier. A node that was itself
// stalled (starved of CPU, a paused VM) then does not find every other node dead the moment it
// resumes, before it has read the renewals its watch has queued. While no renewal is seen at
// all (the API server out of reach), the answer stays what it was; the next renewal seen
// moves the clock on (Renewed says so).
func (l *Liveness) Renewing(now time.Time) (map[string]bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ref := now
	if watch := l.latest.Add(l.cfg.Renew); watch.Before(ref) {
		ref = watch
	}
	out := make(map[string]bool, len(l.renewed))
	var next time.Time
	for n, at := range l.renewed {
		if until := at.Add(l.cfg.Duration); until.After(ref) {
			out[n] = true
			if next.IsZero() || until.Before(next) {
				next = until
			}
		}
	}
	if ref.Before(now) {
		next = time.Time{} // behind: only the next renewal seen changes the answer
	}
	return out, next
}

// Forget drops node's Lease (deleted: the speaker shut down, or the Node went).
func (l *Liveness) Forget(node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.renewed, node)
}

// Alive returns the nodes to count as alive at now, given memberlist's view members (which
// includes this node) and whether memberlist finds this node degraded (Members.Degraded), and
// when the answer may change without any new input (zero: not by time alone), so the caller
// can look again then.
func (l *Liveness) Alive(members map[string]bool, degraded bool, now time.Time) (map[string]bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := range l.members {
		if !members[n] {
			l.gone[n] = now
		}
	}
	l.members = make(map[string]bool, len(members))
	for n, ok := range members {
		if ok {
			l.members[n] = true
			delete(l.gone, n)
		}
	}

	alive := make(map[string]bool, len(members))
	known := 0
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	fresh := map[string]time.Time{}
	for n, at := range l.renewed {
		if l.members[n] {
			continue
		}
		if until := at.Add(l.cfg.Duration); until.After(now) {
			fresh[n] = at
			later(until)
		}
	}
	for n := range l.members {
		alive[n] = true
		known++
	}
	known += len(fresh)
	hold := 2*len(l.members) < known || (degraded && known >= 3)
	for n, at := range fresh {
		since, ok := l.gone[n]
		if !ok {
			since = l.start
		}
		proof := since.Add(l.cfg.Grace)
		if hold || !at.Before(proof) {
			alive[n] = true
		}
	}
	return alive, next
}
