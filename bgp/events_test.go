package bgp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// fakeReason stands for GoBGP's unexported *fsmStateReason: a Stringer with a
// BGPNotification field.
type fakeReason struct {
	Type            string
	BGPNotification *bgp.BGPMessage
}

func (r fakeReason) String() string { return r.Type }

// timeoutError is what a dial that timed out wraps.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func dialError(addr string, err error) error {
	ap := netip.MustParseAddrPort(addr)
	return &net.OpError{Op: "dial", Net: "tcp", Source: &net.TCPAddr{IP: net.IPv4zero},
		Addr: net.TCPAddrFromAddrPort(ap), Err: err}
}

// TestDescribeEvent pins the GoBGP v3.37.0 log messages and fields that explain a session
// failure (pkg/server/fsm.go), as GoBGP logs them, and the LastError made of each.
func TestDescribeEvent(t *testing.T) {
	const us = "AS 65000, router ID 198.51.100.2, from 198.51.100.2"
	for _, tc := range []struct {
		name     string
		msg      string
		fields   log.Fields
		password bool
		want     string // "" : not an error of the session
	}{{
		name: "connection refused",
		msg:  "failed to connect",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1",
			"Error": dialError("198.51.100.1:179", os.NewSyscallError("connect", syscall.ECONNREFUSED))},
		want: "connecting to 198.51.100.1:179: connect: connection refused",
	}, {
		name: "kernel without TCP MD5",
		msg:  "failed to connect",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1",
			"Error": dialError("198.51.100.1:179", os.NewSyscallError("setsockopt", syscall.ENOPROTOOPT))},
		want: "the kernel refused the TCP MD5 signature option for the session's password (it lacks CONFIG_TCP_MD5SIG): " +
			"connecting to 198.51.100.1:179: setsockopt: protocol not available",
	}, {
		name: "timeout without password",
		msg:  "failed to connect",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1",
			"Error": dialError("198.51.100.1:179", timeoutError{})},
		want: "connecting to 198.51.100.1:179: i/o timeout",
	}, {
		name: "timeout with a password: maybe the wrong one",
		msg:  "failed to connect",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1",
			"Error": dialError("198.51.100.1:179", timeoutError{})},
		password: true,
		want: "connecting to 198.51.100.1:179: i/o timeout (with a TCP MD5 password, a router that expects another password or none " +
			"drops the connection attempts silently)",
	}, {
		name:   "MD5 on the listening socket",
		msg:    "failed to set md5",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "Err": syscall.ENOPROTOOPT},
		want:   "setting the TCP MD5 password on the listening socket: protocol not available",
	}, {
		name:   "NOTIFICATION received while established",
		msg:    "received notification",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "Code": uint8(2), "Subcode": uint8(2), "Data": []byte{0xfd, 0xe8}},
		want:   "received NOTIFICATION: OPEN Message Error, Bad Peer AS",
	}, {
		name: "shutdown communication received",
		msg:  "received notification",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "Code": uint8(6), "Subcode": uint8(2),
			"Communicated-Reason": "maintenance", "Data": []byte{}},
		want: `received NOTIFICATION: Cease, Administrative Shutdown: "maintenance"`,
	}, {
		name: "NOTIFICATION sent on a bad OPEN",
		msg:  "sent notification",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1",
			"Data": bgp.NewMessageError(2, 2, nil, "as number mismatch expected 65099, received 65001")},
		want: "sent NOTIFICATION: OPEN Message Error, Bad Peer AS (as number mismatch expected 65099, received 65001)",
	}, {
		name:   "hold timer expired",
		msg:    "sent notification",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "State": "BGP_FSM_ESTABLISHED", "Code": uint8(4), "Subcode": uint8(0), "Data": []byte{}},
		want:   "sent NOTIFICATION: Hold Timer Expired",
	}, {
		name: "our own Cease is not an error",
		msg:  "sent notification",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "State": "BGP_FSM_ESTABLISHED", "Code": uint8(6), "Subcode": uint8(2),
			"Communicated-Reason": "ironlb speaker shutting down", "Data": []byte{}},
	}, {
		name:   "NOTIFICATION received while opening (GoBGP does not decode it)",
		msg:    "state changed",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "old": "BGP_FSM_OPENCONFIRM", "new": "BGP_FSM_IDLE", "reason": &fakeReason{Type: "invalid-msg"}},
		want: "received a NOTIFICATION in state OpenConfirm (GoBGP v3 does not decode it before the session is established): " +
			"the router refused this node's OPEN; check that the router expects this node as it presents itself (" + us + ")",
	}, {
		name: "invalid message with our NOTIFICATION: already explained by the sent notification",
		msg:  "state changed",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "old": "BGP_FSM_OPENSENT", "new": "BGP_FSM_IDLE",
			"reason": &fakeReason{Type: "invalid-msg", BGPNotification: bgp.NewBGPNotificationMessage(2, 2, nil)}},
	}, {
		name:   "router closes while opening",
		msg:    "state changed",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "old": "BGP_FSM_OPENSENT", "new": "BGP_FSM_IDLE", "reason": &fakeReason{Type: "read-failed"}},
		want:   "the router closed the connection in state OpenSent without a NOTIFICATION (read-failed); is this node configured as its neighbor (" + us + ")?",
	}, {
		name:   "connection lost while established",
		msg:    "state changed",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "old": "BGP_FSM_ESTABLISHED", "new": "BGP_FSM_IDLE", "reason": &fakeReason{Type: "read-failed"}},
		want:   "connection closed or reset in state Established (read-failed)",
	}, {
		name:   "normal transition",
		msg:    "state changed",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "old": "BGP_FSM_OPENCONFIRM", "new": "BGP_FSM_ESTABLISHED", "reason": &fakeReason{Type: "open-msg-negotiated"}},
	}, {
		name:   "unrelated message",
		msg:    "Add a peer configuration",
		fields: log.Fields{"Topic": "Peer", "Key": "198.51.100.1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := describeEvent(tc.msg, tc.fields, peerRef{name: "r", us: us, password: tc.password})
			if ok != (tc.want != "") || got != tc.want {
				t.Errorf("describeEvent = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

func TestCarriesNotification(t *testing.T) {
	for _, tc := range []struct {
		reason any
		want   bool
	}{
		{&fakeReason{BGPNotification: bgp.NewBGPNotificationMessage(6, 2, nil)}, true},
		{&fakeReason{}, false},
		{fakeReason{BGPNotification: bgp.NewBGPNotificationMessage(6, 2, nil)}, false}, // GoBGP logs a pointer
		{nil, false},
		{(*fakeReason)(nil), false},
		{"invalid-msg", false},
	} {
		if got := carriesNotification(tc.reason); got != tc.want {
			t.Errorf("carriesNotification(%#v) = %v, want %v", tc.reason, got, tc.want)
		}
	}
}

func TestNotificationText(t *testing.T) {
	for _, tc := range []struct {
		code, subcode         uint8
		communication, detail string
		want                  string
	}{
		{2, 2, "", "", "OPEN Message Error, Bad Peer AS"},
		{6, 4, "rebooting", "", `Cease, Administrative Reset: "rebooting"`},
		{4, 0, "", "", "Hold Timer Expired"},
		{3, 99, "", "", "UPDATE Message Error, subcode 99"},
		{42, 1, "", "", "error code 42, subcode 1"},
		{2, 6, "", "hold time 1", "OPEN Message Error, Unacceptable Hold Time (hold time 1)"},
	} {
		if got := notificationText(tc.code, tc.subcode, tc.communication, tc.detail); got != tc.want {
			t.Errorf("notificationText(%d, %d) = %q, want %q", tc.code, tc.subcode, got, tc.want)
		}
	}
}

func TestSessionErrorsRecord(t *testing.T) {
	notified := 0
	e := newSessionErrors(func() { notified++ })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }
	a := netip.MustParseAddr("198.51.100.1")
	e.setPeers(map[netip.Addr]peerRef{a: {name: "r"}})

	e.record(netip.MustParseAddr("198.51.100.9"), "not ours") // no such peer: ignored
	e.record(a, "connect: no route to host")
	first := now
	now = now.Add(time.Minute)
	e.record(a, "connect: no route to host") // a repeat keeps its time, notifies nobody
	if got := e.get("r"); got.text != "connect: no route to host" || got.at != first || notified != 1 {
		t.Errorf("after a repeat: %+v, %d notifications; want the first time and 1 notification", got, notified)
	}
	e.record(a, "received NOTIFICATION: Cease")
	if got := e.get("r"); got.at != now || notified != 2 {
		t.Errorf("after a new error: %+v, %d notifications", got, notified)
	}
	e.forget("r")
	if got := e.get("r"); got.text != "" {
		t.Errorf("after forget: %+v", got)
	}
}

// captureHandler keeps slog records.
type captureHandler struct {
	mu      sync.Mutex
	level   slog.Level
	records []string
}

func (h *captureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, b.String())
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func TestGoBGPLogger(t *testing.T) {
	h := &captureHandler{level: slog.LevelInfo}
	errs := newSessionErrors(func() {})
	errs.setPeers(map[netip.Addr]peerRef{netip.MustParseAddr("198.51.100.1"): {name: "r"}})
	l := &gobgpLogger{log: slog.New(h), errs: errs}

	if l.GetLevel() != log.DebugLevel {
		t.Errorf("GetLevel = %v: GoBGP would not report failed connection attempts", l.GetLevel())
	}
	l.Info("Peer Up", log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "State": "BGP_FSM_OPENCONFIRM"})
	l.Debug("failed to connect", log.Fields{"Topic": "Peer", "Key": "198.51.100.1",
		"Error": dialError("198.51.100.1:179", os.NewSyscallError("connect", syscall.EHOSTUNREACH))})
	l.Warn("received notification", log.Fields{"Topic": "Peer", "Key": "::ffff:198.51.100.9", "Code": uint8(6), "Subcode": uint8(2)})
	l.Warn("sent notification", log.Fields{"Topic": "Peer", "Key": "198.51.100.1", "Code": uint8(6), "Subcode": uint8(2)})
	l.Error("failed to close existing tcp connection", log.Fields{"Topic": "Peer", "Key": "198.51.100.1"})

	want := []string{
		"INFO gobgp: Peer Up peer=r key=198.51.100.1 state=BGP_FSM_OPENCONFIRM topic=Peer",
		"WARN gobgp: received notification code=6 key=::ffff:198.51.100.9 subcode=2 topic=Peer",
		"INFO gobgp: sent notification peer=r code=6 key=198.51.100.1 subcode=2 topic=Peer", // our own Cease
	}
	if diff := cmp.Diff(want, h.records); diff != "" {
		t.Errorf("slog records (-want +got):\n%s", diff)
	}
	if got := errs.get("r").text; got != "connecting to 198.51.100.1:179: connect: no route to host" {
		t.Errorf("the debug-level connection failure was not recorded: %q", got)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Fatal did not panic")
			}
		}()
		l.Fatal("failed to listen grpc port", log.Fields{})
	}()
}
