package l2

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Announcer answers ARP requests and Neighbor Solicitations for the IPs this node owns, each
// only on the interfaces given for it, and announces the IPs it takes over with gratuitous
// ARP and unsolicited Neighbor Advertisements.
//
// The speaker tells it what the node owns with SetOwned, at any time and from any
// goroutine. Run does the I/O: it opens a responder (an AF_PACKET socket) per link
// (interface and protocol) that an owned IP needs, closes it when none does, sends the
// gratuitous bursts and retries links that failed. Status, Stats and the OnEvent callback
// report what happens. See README.md for the design.
type Announcer struct {
	cfg AnnouncerConfig
	log *slog.Logger

	// table is what responders answer: each owned IP and its interfaces, sorted. SetOwned
	// replaces it whole; responders read it without a lock for every request.
	table atomic.Pointer[ownedTable]
	// kick wakes Run's loop; it holds at most one wake-up.
	kick chan struct{}

	mu      sync.Mutex
	owned   ownedTable         // the last SetOwned, as stored in table
	fresh   map[ownedPair]bool // pairs SetOwned added since the loop last took them
	status  []LinkStatus       // the loop's view of its links, for Status
	counts  map[Link]*linkCounters
	open    map[Link]*responder // open responders, for Stats to read their drop counts
	running bool

	// probes are the owned IPs being probed or held back by a conflict (probing.go), with
	// where the conflict was seen; holding is the held set the responders read.
	probes     map[netip.Addr]*probe
	probeLinks map[netip.Addr]Link
	holding    atomic.Pointer[map[netip.Addr]bool]
	// heard carries what other hosts say about held IPs from the responders to the loop.
	heard chan probeAnswer
}

// ownedTable maps each owned IP to the names of the interfaces it is answered on.
type ownedTable map[netip.Addr][]string

// ownedPair is an owned IP on one interface.
type ownedPair struct {
	ip    netip.Addr
	iface string
}

// linkCounters are a link's Counters, updated by its responder without a lock.
type linkCounters struct {
	requests, replies, gratuitous, probes, conflicts, sendErrors, dropped atomic.Uint64
}

// NewAnnouncer returns an Announcer that owns nothing; it opens nothing until Run. cfg is
// copied.
func NewAnnouncer(cfg AnnouncerConfig) *Announcer {
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &Announcer{
		cfg:    cfg,
		log:    log,
		kick:   make(chan struct{}, 1),
		owned:  ownedTable{},
		fresh:  map[ownedPair]bool{},
		counts: map[Link]*linkCounters{},
		open:   map[Link]*responder{},

		probes:     map[netip.Addr]*probe{},
		probeLinks: map[netip.Addr]Link{},
		heard:      make(chan probeAnswer, 64),
	}
	a.table.Store(&a.owned)
	a.holding.Store(&map[netip.Addr]bool{})
	return a
}

// SetOwned replaces the set of owned IPs: owned maps each IP to the names of the interfaces
// it is answered on (ChooseInterfaces' choice). It is safe to call at any time, from any
// goroutine, before, during or after Run, and it keeps no reference to owned.
//
// It applies the difference with the previous set. An IP (on an interface) that is no
// longer owned is not answered from the moment SetOwned returns, and its gratuitous burst,
// if one is running, stops. A newly owned IP is announced by Run's loop right away (once
// its link's responder is open), then GratuitousCount-1 more times. An IP that stays owned
// on the same interface causes no packet.
//
// IPv4-mapped IPv6 addresses count as IPv4, zones are dropped, and invalid IPs, empty names
// and IPs without interfaces are ignored. SetOwnedProbing probes new IPs first.
func (a *Announcer) SetOwned(owned map[netip.Addr][]string) { a.setOwned(owned, nil) }

func (a *Announcer) setOwned(owned map[netip.Addr][]string, probe func(netip.Addr) bool) {
	next := make(ownedTable, len(owned))
	for ip, names := range owned {
		if !ip.IsValid() {
			a.log.Warn("ignoring an invalid owned IP")
			continue
		}
		ip = ip.Unmap().WithZone("")
		for _, n := range names {
			if n != "" {
				next[ip] = append(next[ip], n)
			}
		}
	}
	for ip, names := range next {
		next[ip] = sortedUnique(names)
	}

	a.mu.Lock()
	for ip, names := range next {
		for _, n := range names {
			if !slices.Contains(a.owned[ip], n) {
				a.fresh[ownedPair{ip, n}] = true
			}
		}
	}
	for ip, names := range a.owned {
		for _, n := range names {
			if !slices.Contains(next[ip], n) {
				delete(a.fresh, ownedPair{ip, n})
			}
		}
	}
	a.startProbes(next, probe, time.Now())
	a.owned = next
	a.publishHeld()
	a.mu.Unlock()
	a.wake()
}

// Owned returns a copy of the owned set, as SetOwned stored it (held IPs included).
func (a *Announcer) Owned() map[netip.Addr][]string {
	a.mu.Lock()
	t := a.owned
	a.mu.Unlock()
	out := make(map[netip.Addr][]string, len(t))
	for ip, names := range t {
		out[ip] = slices.Clone(names)
	}
	return out
}

// answers reports whether ip is owned on interface iface: whether a responder there
// answers for it.
func (a *Announcer) answers(ip netip.Addr, iface string) bool {
	return slices.Contains((*a.table.Load())[ip], iface)
}

func (a *Announcer) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Status returns the state of every link that owned IPs need, sorted by interface and
// protocol, as Run's loop last saw it.
func (a *Announcer) Status() []LinkStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]LinkStatus, len(a.status))
	for i, s := range a.status {
		s.IPs = slices.Clone(s.IPs)
		out[i] = s
	}
	return out
}

// Stats returns the packet counters of every link that has had a responder.
func (a *Announcer) Stats() map[Link]Counters {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.open {
		r.collectDrops()
	}
	out := make(map[Link]Counters, len(a.counts))
	for l, c := range a.counts {
		out[l] = Counters{
			Requests:   c.requests.Load(),
			Replies:    c.replies.Load(),
			Gratuitous: c.gratuitous.Load(),
			Probes:     c.probes.Load(),
			Conflicts:  c.conflicts.Load(),
			SendErrors: c.sendErrors.Load(),
			Dropped:    c.dropped.Load(),
		}
	}
	return out
}

// countersFor returns link's counters, made on first use and kept for the Announcer's life.
func (a *Announcer) countersFor(l Link) *linkCounters {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.counts[l]
	if c == nil {
		c = &linkCounters{}
		a.counts[l] = c
	}
	return c
}

// Run opens responders for the owned IPs, answers for them and announces them until ctx
// ends; then it closes every responder and returns nil. It returns an error at once if the
// Announcer is already running. Run may be called again after it returned.
func (a *Announcer) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("l2: Announcer.Run is already running")
	}
	a.running = true
	a.mu.Unlock()

	l := &loop{
		a:      a,
		links:  map[Link]*linkState{},
		bursts: map[burstKey]*burst{},
		failed: make(chan readFailure),
		done:   make(chan struct{}),
	}
	defer func() {
		l.shutdown()
		a.mu.Lock()
		a.running = false
		a.status = nil
		a.mu.Unlock()
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		now := time.Now()
		l.reconcile(now)
		l.stepProbes(now)
		l.sendDue(now)
		next, ok := l.nextWake()
		if p, pok := a.nextProbe(); pok && (!ok || p.Before(next)) {
			next, ok = p, true
		}
		if ok {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
		case <-timer.C:
		case f := <-l.failed:
			l.readFailed(f, time.Now())
		case ans := <-a.heard:
			l.probeAnswered(ans, time.Now())
		}
		timer.Stop()
	}
}

// loop is the state of Run's goroutine; only that goroutine touches it.
type loop struct {
	a      *Announcer
	links  map[Link]*linkState
	bursts map[burstKey]*burst
	// failed receives the error of a responder whose read loop ended on its own.
	failed chan readFailure
	// done is closed when Run ends, so that failing readers do not wait for it.
	done chan struct{}
}

// linkState is a link that owned IPs need.
type linkState struct {
	ips     []netip.Addr // the owned IPs on it, sorted
	r       *responder   // nil while not open
	err     error        // why not open, or why groups failed while open
	retryAt time.Time    // when to try opening again
}

type burstKey struct {
	link Link
	ip   netip.Addr
}

// burst is a gratuitous announcement still to repeat.
type burst struct {
	left int       // announcements still to send
	next time.Time // when the next is due
}

type readFailure struct {
	r   *responder
	err error
}

// reconcile makes the links match the owned set: it closes links that no owned IP needs,
// opens (or retries, when due) those that are needed, updates their IPv6 groups and starts
// the bursts of newly owned IPs.
func (l *loop) reconcile(now time.Time) {
	a := l.a
	a.mu.Lock()
	owned, fresh := a.owned, a.fresh
	a.fresh = map[ownedPair]bool{}
	a.mu.Unlock()

	need := map[Link][]netip.Addr{}
	for ip, names := range owned {
		for _, n := range names {
			k := Link{Interface: n, Protocol: protocolOf(ip)}
			need[k] = append(need[k], ip)
		}
	}
	for k, ls := range l.links {
		if _, ok := need[k]; ok {
			continue
		}
		if ls.r != nil {
			ls.r.close()
		}
		a.log.Info("closed responder: no owned IP needs it", "interface", k.Interface, "protocol", k.Protocol)
		l.emit(Event{Link: k, Kind: LinkClosed, IPs: ls.ips})
		delete(l.links, k)
	}
	for k, ips := range need {
		slices.SortFunc(ips, netip.Addr.Compare)
		ls := l.links[k]
		if ls == nil {
			ls = &linkState{}
			l.links[k] = ls
		}
		ls.ips = ips
		if ls.r == nil {
			if now.Before(ls.retryAt) {
				continue
			}
			if !l.open(k, ls, now) {
				continue
			}
			for _, ip := range ips {
				l.startBurst(k, ip, now)
			}
		} else {
			for _, ip := range ips {
				if fresh[ownedPair{ip, k.Interface}] {
					l.startBurst(k, ip, now)
				}
			}
		}
		if k.Protocol == NDP {
			l.updateGroups(k, ls)
		}
	}
	l.publishStatus()
}

// open tries to open the responder of link k and reports the outcome.
func (l *loop) open(k Link, ls *linkState, now time.Time) bool {
	a := l.a
	r, err := openResponder(a, k, l.failed, l.done)
	if err != nil {
		ls.retryAt = now.Add(a.cfg.RetryInterval)
		if ls.err == nil || ls.err.Error() != err.Error() {
			a.log.Warn("cannot answer on interface", "interface", k.Interface, "protocol", k.Protocol, "ips", ls.ips, "err", err)
			l.emit(Event{Link: k, Kind: LinkFailed, IPs: ls.ips, Err: err})
		}
		ls.err = err
		return false
	}
	ls.r, ls.err = r, nil
	a.log.Info("answering on interface", "interface", k.Interface, "protocol", k.Protocol, "mac", r.mac.String(), "ips", len(ls.ips))
	l.emit(Event{Link: k, Kind: LinkUp, IPs: ls.ips})
	return true
}

// updateGroups joins the solicited-node groups of the IPv6 addresses on an open NDP link
// and leaves those no longer needed.
func (l *loop) updateGroups(k Link, ls *linkState) {
	if ls.r == nil {
		return
	}
	err := ls.r.groups.set(ls.ips)
	switch {
	case err != nil && (ls.err == nil || ls.err.Error() != err.Error()):
		l.a.log.Warn("cannot join solicited-node groups: multicast solicitations may not arrive", "interface", k.Interface, "err", err)
	case err == nil && ls.err != nil:
		l.a.log.Info("joined every solicited-node group", "interface", k.Interface)
	}
	ls.err = err
}

// readFailed handles a responder whose socket failed: it is closed, reported, and tried
// again after RetryInterval.
func (l *loop) readFailed(f readFailure, now time.Time) {
	k := f.r.link
	ls := l.links[k]
	if ls == nil || ls.r != f.r {
		return // already closed
	}
	f.r.close()
	ls.r, ls.err, ls.retryAt = nil, f.err, now.Add(l.a.cfg.RetryInterval)
	l.a.log.Warn("responder failed; retrying", "interface", k.Interface, "protocol", k.Protocol, "err", f.err, "retry", l.a.cfg.RetryInterval)
	l.emit(Event{Link: k, Kind: LinkFailed, IPs: ls.ips, Err: f.err})
}

// startBurst announces ip on link k now and schedules its repeats, unless ip is held (its
// burst starts when it is claimed).
func (l *loop) startBurst(k Link, ip netip.Addr, now time.Time) {
	if l.a.isHeld(ip) {
		return
	}
	n, every := l.a.cfg.GratuitousCount, l.a.cfg.GratuitousInterval
	if n <= 0 {
		return
	}
	key := burstKey{k, ip}
	delete(l.bursts, key)
	for {
		l.links[k].r.announce(ip)
		n--
		if n == 0 {
			return
		}
		if every > 0 {
			break
		}
	}
	l.bursts[key] = &burst{left: n, next: now.Add(every)}
}

// sendDue sends the repeats that are due, and drops those whose IP is no longer owned on
// the link or whose link is not open.
func (l *loop) sendDue(now time.Time) {
	for key, b := range l.bursts {
		ls := l.links[key.link]
		if ls == nil || ls.r == nil || !l.a.answers(key.ip, key.link.Interface) {
			delete(l.bursts, key)
			continue
		}
		if now.Before(b.next) {
			continue
		}
		ls.r.announce(key.ip)
		if b.left--; b.left == 0 {
			delete(l.bursts, key)
			continue
		}
		b.next = b.next.Add(l.a.cfg.GratuitousInterval)
	}
}

// nextWake returns when the loop must next run on its own: the next repeat or retry.
func (l *loop) nextWake() (time.Time, bool) {
	var next time.Time
	for _, b := range l.bursts {
		if next.IsZero() || b.next.Before(next) {
			next = b.next
		}
	}
	for _, ls := range l.links {
		if ls.r == nil && (next.IsZero() || ls.retryAt.Before(next)) {
			next = ls.retryAt
		}
	}
	return next, !next.IsZero()
}

func (l *loop) emit(e Event) {
	e.IPs = slices.Clone(e.IPs)
	if l.a.cfg.OnEvent != nil {
		l.a.cfg.OnEvent(e)
	}
}

// publishStatus stores the links' state for Status.
func (l *loop) publishStatus() {
	st := make([]LinkStatus, 0, len(l.links))
	for k, ls := range l.links {
		st = append(st, LinkStatus{Link: k, IPs: ls.ips, Up: ls.r != nil, Err: ls.err})
	}
	slices.SortFunc(st, func(x, y LinkStatus) int {
		return cmp.Or(strings.Compare(x.Interface, y.Interface), strings.Compare(string(x.Protocol), string(y.Protocol)))
	})
	l.a.mu.Lock()
	l.a.status = st
	l.a.mu.Unlock()
}

// shutdown closes every responder and waits for their read loops to end.
func (l *loop) shutdown() {
	close(l.done)
	for _, ls := range l.links {
		if ls.r != nil {
			ls.r.close()
		}
	}
}
