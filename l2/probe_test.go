package l2

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestProbeMachine drives the probe state machine through scripts of steps at given times
// (milliseconds from the start) and checks what each step says to do.
//
// A step is "t:tick" (expects "send", "claim" or "-") or "t:answer:X" (another host with MAC
// ending X; expects "conflict" or "-"). held is checked after every step.
func TestProbeMachine(t *testing.T) {
	cfg := ProbeConfig{Count: 3, Interval: 100 * time.Millisecond, Backoff: time.Second, MaxBackoff: 4 * time.Second}
	type step struct {
		at     int // ms
		do     string
		expect string
		held   bool
		due    int // ms, the next due time after the step (-1: do not check)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"nobody answers: three probes, then claimed after one more interval", []step{
			{0, "tick", "send", true, 100},
			{100, "tick", "send", true, 200},
			{200, "tick", "send", true, 300},
			{300, "tick", "claim", false, -1},
			{400, "tick", "-", false, -1},
			{500, "answer:aa", "-", false, -1}, // claimed: defended by the responder, not here
		}},
		{"early ticks change nothing", []step{
			{0, "tick", "send", true, 100},
			{50, "tick", "-", true, 100},
			{99, "tick", "-", true, 100},
			{100, "tick", "send", true, 200},
		}},
		{"an answer during the first round is a conflict; backoff doubles to the cap; recovery", []step{
			{0, "tick", "send", true, 100},
			{20, "answer:aa", "conflict", true, 1020},
			{40, "answer:aa", "-", true, 1020}, // between rounds: ignored
			{100, "tick", "-", true, 1020},     // not due
			{1020, "tick", "send", true, 1120}, // round 2
			{1030, "answer:aa", "-", true, 3030},
			{3030, "tick", "send", true, 3130}, // round 3
			{3040, "answer:aa", "-", true, 7040},
			{7040, "tick", "send", true, 7140}, // round 4: capped at 4 s
			{7050, "answer:aa", "-", true, 11050},
			{11050, "tick", "send", true, 11150}, // the host is gone
			{11150, "tick", "send", true, 11250},
			{11250, "tick", "send", true, 11350},
			{11350, "tick", "claim", false, -1},
		}},
		{"another host takes the address while it is conflicted: reported again", []step{
			{0, "tick", "send", true, 100},
			{10, "answer:aa", "conflict", true, 1010},
			{1010, "tick", "send", true, 1110},
			{1020, "answer:bb", "conflict", true, 3020},
		}},
		{"an answer after the last probe, before the round ends, still counts", []step{
			{0, "tick", "send", true, 100},
			{100, "tick", "send", true, 200},
			{200, "tick", "send", true, 300},
			{299, "answer:aa", "conflict", true, 1299},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
			p := newProbe(cfg, at(0))
			for i, s := range tt.steps {
				var got string
				if from, ok := strings.CutPrefix(s.do, "answer:"); ok {
					var m mac
					fmt.Sscanf(from, "%x", &m[5])
					got = outcomeWord(false, p.answer(m, at(s.at)))
				} else {
					got = outcomeWord(p.tick(at(s.at)))
				}
				if got != s.expect {
					t.Fatalf("step %d (%d ms %s): got %q, want %q", i, s.at, s.do, got, s.expect)
				}
				if p.held() != s.held {
					t.Fatalf("step %d (%d ms %s): held %v, want %v", i, s.at, s.do, p.held(), s.held)
				}
				if s.due >= 0 && !p.due.Equal(at(s.due)) {
					t.Fatalf("step %d (%d ms %s): due at %v ms, want %d", i, s.at, s.do, p.due.Sub(start).Milliseconds(), s.due)
				}
			}
		})
	}
}

func outcomeWord(send bool, o probeOutcome) string {
	switch {
	case send:
		return "send"
	case o == becameClaimed:
		return "claim"
	case o == becameConflicted:
		return "conflict"
	}
	return "-"
}
