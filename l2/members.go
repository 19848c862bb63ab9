package l2

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MembersConfig tunes node liveness. Failure detection time is roughly
// ProbeInterval x (nodes probed before the dead one) + ProbeInterval (direct and indirect
// probes) + the suspicion timeout (SuspicionMult x max(1, log10(nodes)) x ProbeInterval), plus a
// GossipInterval to spread the verdict. Shorter intervals detect faster and cost more packets
// (each node sends a probe every ProbeInterval and gossip every GossipInterval) and more false
// suspicions on a loaded host; DefaultMembersConfig gives each value with its reason.
type MembersConfig struct {
	// NodeName is this member's name: the Kubernetes node name.
	NodeName string
	// BindAddr is the address memberlist listens and advertises on (the node's address on
	// the LAN); BindPort its TCP and UDP port.
	BindAddr netip.Addr
	BindPort int
	// SecretKey encrypts gossip (AES-GCM; 16, 24 or 32 bytes). Empty disables encryption,
	// which the speaker logs as a warning.
	SecretKey []byte
	// ExtraKeys are accepted besides SecretKey for what other members send, so the key can be
	// rotated with no split: first every node accepts the new key, then every node encrypts
	// with it and accepts the old one, then the old one goes (Members.SetKeys applies each
	// step while memberlist runs).
	ExtraKeys [][]byte
	// ProbeInterval is how often a member probes one other member.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct probe waits for its ack before indirect probes start;
	// it must exceed the LAN's round trip under load.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspected member has to refute before it is declared
	// dead; SuspicionMaxTimeoutMult bounds the timeout when few members confirm.
	SuspicionMult, SuspicionMaxTimeoutMult int
	// GossipInterval is how often state changes (dead, left) are gossiped.
	GossipInterval time.Duration
	// Log receives memberlist's messages at debug level.
	Log *slog.Logger
}

// DefaultMembersConfig is tuned to detect a dead node on a LAN in well under a second:
//   - ProbeInterval 150 ms (memberlist's LAN default is 1 s): with 3 nodes the dead one is
//     probed within 300 ms, and the probe (direct, then indirect) ends 150 ms later;
//   - ProbeTimeout 75 ms (LAN default 500 ms): a LAN round trip is well under 1 ms; 75 ms
//     leaves room for a busy node's scheduler, and indirect probes and TCP get the rest of the
//     interval before a suspicion;
//   - SuspicionMult 2 (default 4) and max multiplier 3 (default 6): a suspicion lasts 300 ms
//     for up to 10 nodes (longer with more, by log10), up to 900 ms while others confirm;
//   - GossipInterval 50 ms (default 200 ms): a leave or death reaches every node quickly,
//     which is what a graceful shutdown's failover waits for.
//
// BENCHMARKS.md has the measured failover times and false-failover counts for this tuning.
func DefaultMembersConfig() MembersConfig {
	return MembersConfig{
		BindPort:                7946,
		ProbeInterval:           150 * time.Millisecond,
		ProbeTimeout:            75 * time.Millisecond,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 3,
		GossipInterval:          50 * time.Millisecond,
	}
}

// Members tracks which nodes are alive, with hashicorp/memberlist.
type Members struct {
	cfg     MembersConfig
	mu      sync.Mutex
	ml      *memberlist.Memberlist
	meta    []byte              // this member's metadata, gossiped with its liveness
	keyring *memberlist.Keyring // nil without encryption
	changed chan struct{}
}

// NewMembers returns Members for cfg; Start joins the gossip.
func NewMembers(cfg MembersConfig) *Members {
	return &Members{cfg: cfg, changed: make(chan struct{}, 1)}
}

// Start binds memberlist's sockets.
func (m *Members) Start() error {
	c := memberlist.DefaultLANConfig()
	c.Name = m.cfg.NodeName
	c.BindAddr = m.cfg.BindAddr.String()
	c.AdvertiseAddr = c.BindAddr
	c.BindPort, c.AdvertisePort = m.cfg.BindPort, m.cfg.BindPort
	c.ProbeInterval, c.ProbeTimeout = m.cfg.ProbeInterval, m.cfg.ProbeTimeout
	c.SuspicionMult, c.SuspicionMaxTimeoutMult = m.cfg.SuspicionMult, m.cfg.SuspicionMaxTimeoutMult
	c.GossipInterval = m.cfg.GossipInterval
	c.TCPTimeout = 2 * time.Second
	if len(m.cfg.SecretKey) > 0 {
		// Our own keyring, so SetKeys can change it while memberlist runs.
		kr, err := memberlist.NewKeyring(m.cfg.ExtraKeys, m.cfg.SecretKey)
		if err != nil {
			return fmt.Errorf("memberlist keyring: %w", err)
		}
		c.Keyring = kr
	}
	c.Events = eventNotifier{m.notify}
	c.Delegate = metaDelegate{m}
	c.LogOutput = io.Discard
	if m.cfg.Log != nil {
		c.LogOutput, c.Logger = nil, log.New(slogWriter{m.cfg.Log}, "", 0)
	}
	ml, err := memberlist.Create(c)
	if err != nil {
		return fmt.Errorf("starting memberlist on %s:%d: %w", c.BindAddr, c.BindPort, err)
	}
	m.mu.Lock()
	m.ml, m.keyring = ml, c.Keyring
	m.mu.Unlock()
	return nil
}

// Join contacts members at addrs (the other nodes' addresses) that are not known yet. It
// returns how many it reached.
func (m *Members) Join(addrs []netip.Addr) (int, error) {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	if ml == nil {
		return 0, errors.New("memberlist not started")
	}
	known := map[string]bool{}
	for _, n := range ml.Members() {
		known[n.Addr.String()] = true
	}
	var targets []string
	for _, a := range addrs {
		if !known[a.String()] && a != m.cfg.BindAddr {
			targets = append(targets, netip.AddrPortFrom(a, uint16(m.cfg.BindPort)).String())
		}
	}
	if len(targets) == 0 {
		return 0, nil
	}
	n, err := ml.Join(targets)
	if err != nil {
		return n, fmt.Errorf("joining %v: %w", targets, err)
	}
	return n, nil
}

// Alive returns the names of the members memberlist considers alive or suspect (a suspect
// member still refutes; declaring it dead early would move IPs on a hiccup).
func (m *Members) Alive() map[string]bool {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	alive := map[string]bool{m.cfg.NodeName: true}
	if ml == nil {
		return alive
	}
	for _, n := range ml.Members() {
		alive[n.Name] = true
	}
	return alive
}

// Degraded reports whether memberlist's local health (Lifeguard's awareness) says this node
// may be the one in trouble: its recent failed probes got no nack from the members asked to
// help, or it had to refute suspicions about itself.
func (m *Members) Degraded() bool {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	return ml != nil && ml.GetHealthScore() > 0
}

// MaxMetaSize is the most metadata a member can publish (memberlist's limit).
const MaxMetaSize = memberlist.MetaMaxSize

// SetMeta publishes this member's metadata (at most MaxMetaSize bytes): the others see it in
// Metas once gossip reaches them, within a few GossipIntervals, and their Changed fires.
func (m *Members) SetMeta(meta []byte) error {
	if len(meta) > MaxMetaSize {
		return fmt.Errorf("memberlist metadata of %d bytes, more than %d", len(meta), MaxMetaSize)
	}
	m.mu.Lock()
	m.meta = slices.Clone(meta)
	ml := m.ml
	m.mu.Unlock()
	if ml == nil {
		return errors.New("memberlist not started")
	}
	// UpdateNode waits until the update is broadcast; the caller need not.
	go func() {
		if err := ml.UpdateNode(time.Second); err != nil && m.cfg.Log != nil {
			m.cfg.Log.Debug("publishing memberlist metadata", "err", err)
		}
	}()
	return nil
}

// Metas returns the metadata of the members alive or suspect, this one included.
func (m *Members) Metas() map[string][]byte {
	m.mu.Lock()
	ml := m.ml
	out := map[string][]byte{m.cfg.NodeName: slices.Clone(m.meta)}
	m.mu.Unlock()
	if ml == nil {
		return out
	}
	for _, n := range ml.Members() {
		if n.Name != m.cfg.NodeName {
			out[n.Name] = slices.Clone(n.Meta)
		}
	}
	return out
}

// metaDelegate gives memberlist this member's metadata; it carries no other messages.
type metaDelegate struct{ m *Members }

func (d metaDelegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.meta) > limit {
		return nil
	}
	return slices.Clone(d.m.meta)
}
func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

// Changed receives a value (coalesced) whenever a member joins, leaves, dies or publishes new
// metadata.
func (m *Members) Changed() <-chan struct{} { return m.changed }

func (m *Members) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Leave tells the other members this one is going (a graceful shutdown), so they take over
// at once instead of waiting for failure detection; then it stops memberlist.
func (m *Members) Leave(timeout time.Duration) error {
	m.mu.Lock()
	ml := m.ml
	m.ml = nil
	m.mu.Unlock()
	if ml == nil {
		return nil
	}
	err := ml.Leave(timeout)
	if serr := ml.Shutdown(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("leaving memberlist: %w", err)
	}
	return nil
}

type eventNotifier struct{ notify func() }

func (e eventNotifier) NotifyJoin(*memberlist.Node)   { e.notify() }
func (e eventNotifier) NotifyLeave(*memberlist.Node)  { e.notify() }
func (e eventNotifier) NotifyUpdate(*memberlist.Node) { e.notify() }

// slogWriter turns memberlist's "[LEVEL] memberlist: msg" lines into slog records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	switch {
	case strings.HasPrefix(line, "[ERR]"):
		level = slog.LevelError
	case strings.HasPrefix(line, "[WARN]"):
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, line, "component", "memberlist")
	return len(p), nil
}

// KeyFromString decodes a memberlist key: text of 16, 24 or 32 characters is the key itself;
// otherwise the text is hexadecimal or base64 of a 16, 24 or 32-byte key (how Secrets are often
// filled). The rule is deterministic, so every speaker reading the same Secret gets the same key.
func KeyFromString(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if validKeyLen(len(s)) {
		return []byte(s), nil
	}
	for _, dec := range []func(string) ([]byte, error){decodeHex, decodeBase64} {
		if b, err := dec(s); err == nil && validKeyLen(len(b)) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("memberlist key: want 16, 24 or 32 bytes (raw, hex or base64), got %d characters", len(s))
}

// KeysFromString reads one key per line (KeyFromString), empty lines aside: the first
// encrypts (MembersConfig.SecretKey), the others are only accepted (ExtraKeys), as a Secret
// holds them during a rotation.
func KeysFromString(s string) ([][]byte, error) {
	var keys [][]byte
	for i, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, err := KeyFromString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("memberlist key: none given")
	}
	return keys, nil
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

func decodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
