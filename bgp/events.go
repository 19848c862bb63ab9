package bgp

// GoBGP v3 reports why a session failed only in its log messages: the NOTIFICATION a peer
// sent, the one GoBGP sent, and (at debug level only) why a connection attempt failed. Its
// API exposes none of it. So the speaker gives GoBGP a logger that forwards to slog and also
// reads those few messages, keyed by the neighbor address GoBGP logs as "Key", into each
// session's LastError. The messages and fields read here are GoBGP v3.37.0's
// (pkg/server/fsm.go); events_test.go pins them.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// errorRecord is a session's last error and when it was first seen.
type errorRecord struct {
	text string
	at   time.Time
}

// sessionErrors keeps the last error of each session. It has its own lock because GoBGP logs
// from its goroutines, also while the speaker waits for a GoBGP call under its own lock.
type sessionErrors struct {
	mu     sync.Mutex
	peers  map[netip.Addr]peerRef // by configured neighbor address
	last   map[string]errorRecord // by peer name
	notify func()
	now    func() time.Time
}

// peerRef names the peer at an address, and says how this node presents itself to it
// (for the errors where the router refused us).
type peerRef struct {
	name     string
	us       string // "AS 65000, router ID 198.51.100.2, from 198.51.100.2"
	password bool   // the session has a TCP MD5 password
}

func newSessionErrors(notify func()) *sessionErrors {
	return &sessionErrors{
		peers:  map[netip.Addr]peerRef{},
		last:   map[string]errorRecord{},
		notify: notify,
		now:    time.Now,
	}
}

// setPeers replaces the address -> peer index.
func (e *sessionErrors) setPeers(peers map[netip.Addr]peerRef) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peers = peers
}

// peer returns the peer configured at addr; its name is "" if there is none.
func (e *sessionErrors) peer(addr netip.Addr) peerRef {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.peers[addr]
}

// forget drops a session's error, when the session is removed or reconfigured.
func (e *sessionErrors) forget(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.last, name)
}

// get returns a session's last error.
func (e *sessionErrors) get(name string) errorRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last[name]
}

// record sets the last error of the session at addr. A repeat of the current error (a
// connection attempt failing the same way every few seconds) keeps its first time and
// notifies nobody, so status writers are not woken for nothing.
func (e *sessionErrors) record(addr netip.Addr, text string) {
	e.mu.Lock()
	p, ok := e.peers[addr]
	changed := ok && e.last[p.name].text != text
	if changed {
		e.last[p.name] = errorRecord{text: text, at: e.now()}
	}
	e.mu.Unlock()
	if changed {
		e.notify()
	}
}

// gobgpLogger is the log.Logger given to GoBGP: it forwards to slog and feeds sessionErrors.
type gobgpLogger struct {
	log  *slog.Logger
	errs *sessionErrors
}

var _ log.Logger = (*gobgpLogger)(nil)

func (l *gobgpLogger) Panic(msg string, f log.Fields) {
	l.handle(slog.LevelError, msg, f)
	panic("gobgp: " + msg)
}

// Fatal panics rather than exiting: a library must not end the process.
func (l *gobgpLogger) Fatal(msg string, f log.Fields) {
	l.handle(slog.LevelError, msg, f)
	panic("gobgp: " + msg)
}

func (l *gobgpLogger) Error(msg string, f log.Fields) { l.handle(slog.LevelError, msg, f) }
func (l *gobgpLogger) Warn(msg string, f log.Fields)  { l.handle(slog.LevelWarn, msg, f) }
func (l *gobgpLogger) Info(msg string, f log.Fields)  { l.handle(slog.LevelInfo, msg, f) }
func (l *gobgpLogger) Debug(msg string, f log.Fields) { l.handle(slog.LevelDebug, msg, f) }

// SetLevel is ignored: the slog handler decides what is written.
func (l *gobgpLogger) SetLevel(log.LogLevel) {}

// GetLevel reports debug, always: GoBGP logs a failed connection attempt only when its
// logger is at debug level, and that is where a refused TCP MD5 password shows up. What
// reaches the output is still up to the slog handler's level.
func (l *gobgpLogger) GetLevel() log.LogLevel { return log.DebugLevel }

func (l *gobgpLogger) handle(level slog.Level, msg string, f log.Fields) {
	key, _ := f["Key"].(string)
	addr, err := netip.ParseAddr(key)
	var peer peerRef
	if err == nil {
		addr = addr.Unmap()
		peer = l.errs.peer(addr)
	}
	if peer.name != "" {
		if text, ok := describeEvent(msg, f, peer); ok {
			l.errs.record(addr, text)
		}
	}
	level = adjustLevel(msg, f, level)
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(f)+1)
	if peer.name != "" {
		attrs = append(attrs, slog.String("peer", peer.name))
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, slog.Any(strings.ToLower(k), f[k]))
	}
	l.log.LogAttrs(ctx, level, "gobgp: "+msg, attrs...)
}

// adjustLevel lowers the level of GoBGP messages that are routine for the speaker: the Cease
// it sends on purpose (GoBGP logs every NOTIFICATION it sends as a warning), and the error
// GoBGP logs when it closes, a second time, the connection of a session removed while
// connecting.
func adjustLevel(msg string, f log.Fields, level slog.Level) slog.Level {
	switch msg {
	case "sent notification":
		code, _ := f["Code"].(uint8)
		subcode, _ := f["Subcode"].(uint8)
		if ownCease(code, subcode) {
			return slog.LevelInfo
		}
	case "failed to close existing tcp connection":
		return slog.LevelDebug
	}
	return level
}

// describeEvent turns the GoBGP log messages that explain a session failure into the
// session's LastError text.
func describeEvent(msg string, f log.Fields, peer peerRef) (string, bool) {
	switch msg {
	case "failed to connect": // fsm.go connectLoop, at debug level
		err, ok := f["Error"].(error)
		if !ok {
			return "", false
		}
		return describeDialError(err, peer.password), true
	case "failed to set md5": // server.go, on the listening socket
		err, _ := f["Err"].(error)
		return fmt.Sprintf("setting the TCP MD5 password on the listening socket: %v", err), true
	case "received notification": // fsm.go recvMessageWithError, in Established only
		code, _ := f["Code"].(uint8)
		subcode, _ := f["Subcode"].(uint8)
		reason, _ := f["Communicated-Reason"].(string)
		return "received NOTIFICATION: " + notificationText(code, subcode, reason, ""), true
	case "sent notification": // fsm.go sendNotificationFromErrorMsg and sendMessageloop
		var code, subcode uint8
		var reason, detail string
		if e, ok := f["Data"].(*bgp.MessageError); ok {
			code, subcode, detail = e.TypeCode, e.SubTypeCode, e.Message
		} else {
			code, _ = f["Code"].(uint8)
			subcode, _ = f["Subcode"].(uint8)
			reason, _ = f["Communicated-Reason"].(string)
		}
		if code == 0 || ownCease(code, subcode) {
			return "", false
		}
		return "sent NOTIFICATION: " + notificationText(code, subcode, reason, detail), true
	case "state changed": // fsm.go StateChange, at debug level
		return describeStateChange(f, peer.us)
	}
	return "", false
}

// describeStateChange explains the session failures that GoBGP logs only as a state change.
//
// GoBGP v3 does not decode a NOTIFICATION received before the session is Established (in
// OpenSent or OpenConfirm, which is where a router refuses our OPEN: a wrong AS number,
// router ID or capability); it closes the connection with reason "invalid-msg" and no
// notification attached. (When GoBGP itself sends one, the reason carries it, and the
// "sent notification" message has been read.)
func describeStateChange(f log.Fields, us string) (string, bool) {
	reason := fmt.Sprint(f["reason"])
	old := fsmStateName(fmt.Sprint(f["old"]))
	opening := old == string(StateOpenSent) || old == string(StateOpenConfirm)
	switch {
	case reason == "invalid-msg" && opening && !carriesNotification(f["reason"]):
		return fmt.Sprintf("received a NOTIFICATION in state %s (GoBGP v3 does not decode it before the session is established): "+
			"the router refused this node's OPEN; check that the router expects this node as it presents itself (%s)", old, us), true
	case (reason == "read-failed" || reason == "write-failed") && opening:
		return fmt.Sprintf("the router closed the connection in state %s without a NOTIFICATION (%s); "+
			"is this node configured as its neighbor (%s)?", old, reason, us), true
	case reason == "read-failed" || reason == "write-failed":
		return fmt.Sprintf("connection closed or reset in state %s (%s)", old, reason), true
	}
	return "", false // the others are deliberate or come with a NOTIFICATION, read above
}

// carriesNotification reports whether GoBGP's state change reason (its unexported
// *fsmStateReason) has a NOTIFICATION attached, as when GoBGP sent one.
func carriesNotification(reason any) bool {
	v := reflect.ValueOf(reason)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	n := v.Elem().FieldByName("BGPNotification")
	return n.IsValid() && n.Kind() == reflect.Pointer && !n.IsNil()
}

// describeDialError explains a failed connection attempt: "connecting to ADDR: ERR" (a
// net.OpError would also print GoBGP's wildcard source address). A kernel without TCP MD5
// support refuses the password's socket option with ENOPROTOOPT; a router with another
// password (or none) silently drops our signed SYNs, so the attempt times out.
func describeDialError(err error, password bool) string {
	text := err.Error()
	var op *net.OpError
	if errors.As(err, &op) && op.Addr != nil && op.Err != nil {
		text = fmt.Sprintf("connecting to %s: %v", op.Addr, op.Err)
	}
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, syscall.ENOPROTOOPT):
		return "the kernel refused the TCP MD5 signature option for the session's password (it lacks CONFIG_TCP_MD5SIG): " + text
	case password && errors.As(err, &timeout) && timeout.Timeout():
		return text + " (with a TCP MD5 password, a router that expects another password or none drops the connection attempts silently)"
	}
	return text
}

// ownCease reports the NOTIFICATIONs the speaker sends on purpose (removing or replacing a
// session, shutting down); they are not errors of the session.
func ownCease(code, subcode uint8) bool {
	return code == bgp.BGP_ERROR_CEASE && (subcode == bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN ||
		subcode == bgp.BGP_ERROR_SUB_PEER_DECONFIGURED || subcode == bgp.BGP_ERROR_SUB_ADMINISTRATIVE_RESET ||
		subcode == bgp.BGP_ERROR_SUB_HARD_RESET)
}

// fsmStateName maps GoBGP's FSM state names to RFC 4271's.
func fsmStateName(s string) string {
	names := map[string]State{
		"BGP_FSM_IDLE": StateIdle, "BGP_FSM_CONNECT": StateConnect, "BGP_FSM_ACTIVE": StateActive,
		"BGP_FSM_OPENSENT": StateOpenSent, "BGP_FSM_OPENCONFIRM": StateOpenConfirm, "BGP_FSM_ESTABLISHED": StateEstablished,
	}
	if n, ok := names[s]; ok {
		return string(n)
	}
	return s
}

// notificationCodes names NOTIFICATION error codes and subcodes as the RFCs do: RFC 4271
// section 4.5 and 6, RFC 5492 (Unsupported Capability), RFC 6608 (FSM error subcodes), RFC
// 4486 and 8538 (Cease subcodes), RFC 7313 (ROUTE-REFRESH), RFC 9234 (Role Mismatch).
var notificationCodes = map[uint8]struct {
	name     string
	subcodes map[uint8]string
}{
	1: {"Message Header Error", map[uint8]string{1: "Connection Not Synchronized", 2: "Bad Message Length", 3: "Bad Message Type"}},
	2: {"OPEN Message Error", map[uint8]string{1: "Unsupported Version Number", 2: "Bad Peer AS", 3: "Bad BGP Identifier",
		4: "Unsupported Optional Parameter", 5: "Authentication Failure", 6: "Unacceptable Hold Time", 7: "Unsupported Capability",
		11: "Role Mismatch"}},
	3: {"UPDATE Message Error", map[uint8]string{1: "Malformed Attribute List", 2: "Unrecognized Well-known Attribute",
		3: "Missing Well-known Attribute", 4: "Attribute Flags Error", 5: "Attribute Length Error", 6: "Invalid ORIGIN Attribute",
		8: "Invalid NEXT_HOP Attribute", 9: "Optional Attribute Error", 10: "Invalid Network Field", 11: "Malformed AS_PATH"}},
	4: {"Hold Timer Expired", nil},
	5: {"Finite State Machine Error", map[uint8]string{1: "Receive Unexpected Message in OpenSent State",
		2: "Receive Unexpected Message in OpenConfirm State", 3: "Receive Unexpected Message in Established State"}},
	6: {"Cease", map[uint8]string{1: "Maximum Number of Prefixes Reached", 2: "Administrative Shutdown", 3: "Peer De-configured",
		4: "Administrative Reset", 5: "Connection Rejected", 6: "Other Configuration Change", 7: "Connection Collision Resolution",
		8: "Out of Resources", 9: "Hard Reset", 10: "BFD Down"}},
	7: {"ROUTE-REFRESH Message Error", map[uint8]string{1: "Invalid Message Length"}},
}

// notificationText describes a NOTIFICATION: "OPEN Message Error, Bad Peer AS", then the
// peer's shutdown communication (RFC 9003) or GoBGP's own explanation, if any.
func notificationText(code, subcode uint8, communication, detail string) string {
	c, ok := notificationCodes[code]
	text := c.name
	if !ok {
		text = fmt.Sprintf("error code %d", code)
	}
	if subcode != 0 {
		if name, ok := c.subcodes[subcode]; ok {
			text += ", " + name
		} else {
			text += fmt.Sprintf(", subcode %d", subcode)
		}
	}
	if communication != "" {
		text += fmt.Sprintf(": %q", communication)
	}
	if detail != "" {
		text += " (" + detail + ")"
	}
	return text
}
