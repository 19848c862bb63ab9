package l2

import (
	"time"
)

// Before this node announces an address that the cluster has not announced before, it checks
// that no other host on the LAN uses it (RFC 5227 section 2.1 for IPv4, the duplicate address
// detection of RFC 4862 section 5.4 for IPv6): it sends ProbeConfig.Count probes (an ARP
// request from 0.0.0.0, a Neighbor Solicitation from ::), Interval apart, and waits Interval
// after the last. Any answer from another host's MAC, or that host's own probe or
// announcement of the address, is a conflict: the address is then neither answered nor
// announced, and it is probed again after a backoff, so it is taken once the other host has
// let it go. This file is the per-address state machine; it does no I/O.

// ProbeConfig tunes the probes before a first announcement. DefaultAnnouncerConfig gives the
// values and their reasons.
type ProbeConfig struct {
	// Count is how many probes a round sends; zero or negative turns probing off (every
	// owned address is answered at once, as before probing existed).
	Count int
	// Interval is the time between two probes, and after the last before the address is
	// taken: a round lasts Count x Interval.
	Interval time.Duration
	// Backoff is the wait before probing a conflicted address again; it doubles after each
	// round that finds the other host still there, up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
}

// probePhase is where an address is in its probing.
type probePhase int

const (
	// probing: the first round is running; the address is neither answered nor announced.
	probing probePhase = iota
	// conflicted: another host uses the address; it is neither answered nor announced, and a
	// round runs now and then to see whether the host is gone.
	conflicted
	// claimed: a round found nobody; the address is answered and announced.
	claimed
)

// probeOutcome is what a step of the machine changes for the announcer.
type probeOutcome int

const (
	noChange probeOutcome = iota
	// becameConflicted: the address is in use by another host (first seen, or seen by another
	// MAC than before).
	becameConflicted
	// becameClaimed: nobody answered a whole round: answer and announce the address.
	becameClaimed
)

// probe is the state of one address being probed, or held back by a conflict.
type probe struct {
	cfg   ProbeConfig
	phase probePhase
	// sent is how many probes the current round has sent; round is false between rounds.
	sent  int
	round bool
	// due is when tick must next run: the next probe, the end of the round, or the next round.
	due time.Time
	// by is the MAC of the host that uses the address (valid while conflicted).
	by mac
	// wait is the backoff before the next round once conflicted.
	wait time.Duration
	// since is when the conflict was first seen.
	since time.Time
}

// newProbe starts probing an address at now: the first probe is due at once.
func newProbe(cfg ProbeConfig, now time.Time) *probe {
	return &probe{cfg: cfg, phase: probing, round: true, due: now}
}

// tick advances the machine when it is due (callers call it when now >= due; earlier calls
// change nothing). send says to send one probe now.
func (p *probe) tick(now time.Time) (send bool, out probeOutcome) {
	if p.phase == claimed || now.Before(p.due) {
		return false, noChange
	}
	if !p.round { // a conflicted address's next round starts
		p.round, p.sent = true, 0
	}
	if p.sent < p.cfg.Count {
		p.sent++
		p.due = now.Add(p.cfg.Interval)
		return true, noChange
	}
	// The round is over and nobody answered (an answer ends the round at once).
	p.phase, p.round = claimed, false
	return false, becameClaimed
}

// answer records that another host (its MAC, never one of the cluster's) uses the address.
// It matters only during a round: between rounds, and once the address is claimed (the
// announcer then defends it and counts a conflict), it changes nothing.
func (p *probe) answer(from mac, now time.Time) probeOutcome {
	if !p.round || p.phase == claimed {
		return noChange
	}
	out := noChange
	if p.phase == probing || from != p.by {
		out = becameConflicted
	}
	if p.phase == probing {
		p.since = now
		p.wait = p.cfg.Backoff
	} else {
		p.wait = min(2*p.wait, p.cfg.MaxBackoff)
	}
	p.phase, p.by = conflicted, from
	p.round = false
	p.due = now.Add(p.wait)
	return out
}

// held reports whether the address must not be answered or announced yet.
func (p *probe) held() bool { return p.phase != claimed }
