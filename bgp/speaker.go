package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// State is a BGP session state, named as in RFC 4271 section 8 (and in BGPSessionState).
type State string

// The session states. GoBGP never reports Connect: it goes from Active (connecting) to
// OpenSent.
const (
	StateIdle        State = "Idle"
	StateConnect     State = "Connect"
	StateActive      State = "Active"
	StateOpenSent    State = "OpenSent"
	StateOpenConfirm State = "OpenConfirm"
	StateEstablished State = "Established"
)

// SessionState is what a session looks like now: the input of a BGPSessionState.
type SessionState struct {
	// Peer and Address are the session's Peer.Name and Peer.Address.
	Peer    string
	Address netip.Addr
	// LocalAddress is the node's address on the session (the next hop GoBGP gives the
	// session's own family); zero unless Established.
	LocalAddress netip.Addr
	// State is the session's state.
	State State
	// EstablishedSince is when the session last became Established (whole seconds); zero
	// unless it is Established now.
	EstablishedSince time.Time
	// LastError is the last reason the session failed or went down: a configuration error
	// (Peer.ConfigError, an invalid Peer, an address conflict), a NOTIFICATION received or
	// sent ("sent NOTIFICATION: OPEN Message Error, Bad Peer AS (...)"), or a connection
	// error ("connecting to 198.51.100.1:179: connect: no route to host"); README.md lists
	// them. It is kept after the session recovers and cleared when the Peer changes.
	LastError string
	// LastErrorTime is when LastError was first seen; repeats of the same error (a failing
	// connection attempt every few seconds) do not move it.
	LastErrorTime time.Time
	// PrefixesSent is the number of routes advertised on the session: the routes of its
	// peer in the families both ends negotiated; 0 unless Established.
	PrefixesSent int
	// PrefixesReceived is the number of prefixes the peer advertised (all are rejected by
	// the import policy, but counted).
	PrefixesReceived int
}

// Speaker is one node's BGP speaker: an embedded GoBGP server, its sessions (SetPeers) and
// its announcements (SetPaths). Its methods are safe for concurrent use. Only one Speaker
// may run at a time in a process: GoBGP keeps some state in package variables.
type Speaker struct {
	cfg     Config
	log     *slog.Logger
	changes chan struct{}
	errs    *sessionErrors

	mu       sync.Mutex
	phase    phase
	srv      *server.BgpServer
	peers    []desiredPeer       // everything SetPeers was given, by name
	paths    []wantPath          // from SetPaths
	sessions map[string]*session // configured in GoBGP, by peer name
	routes   map[routeKey]attrs  // given to GoBGP
	vrfs     uint32              // VRF indexes handed out
}

type phase int

const (
	phaseNew phase = iota
	phaseRunning
	phaseStopping
	phaseStopped
)

// desiredPeer is a Peer from SetPeers; err says why it is not configured.
type desiredPeer struct {
	peer  Peer // normalized unless err is set
	err   string
	errAt time.Time
}

// session is a peer configured in GoBGP: its VRF exists, and its neighbor unless adding it
// failed (err).
type session struct {
	peer     Peer
	vrf      string
	neighbor bool
	err      string
	errAt    time.Time
}

// New returns a speaker for cfg; it starts nothing (Run does). cfg is copied; it is
// checked by Run.
func New(cfg Config) *Speaker {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Speaker{
		cfg:      cfg,
		log:      cfg.Log,
		changes:  make(chan struct{}, 1),
		sessions: map[string]*session{},
		routes:   map[routeKey]attrs{},
	}
	s.errs = newSessionErrors(s.notify)
	return s
}

// Changes receives a value whenever a session's state, error or counts may have changed
// (a session went up or down, a peer sent a NOTIFICATION, SetPeers or SetPaths changed
// something). Signals are coalesced: after a receive, call Sessions for the current state.
func (s *Speaker) Changes() <-chan struct{} { return s.changes }

func (s *Speaker) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Run starts GoBGP with the sessions and paths set so far and keeps them in step with
// SetPeers and SetPaths until ctx ends. Then it withdraws every route, closes every
// session with a Cease NOTIFICATION (Administrative Shutdown), waits up to
// Config.ShutdownTimeout for those to be written, stops GoBGP and returns nil. It returns an
// error if the configuration is invalid or GoBGP does not start. Run may be called once.
//
// GoBGP v3 cannot stop its main goroutine: one idle goroutine stays after Run returns.
func (s *Speaker) Run(ctx context.Context) error {
	if err := s.cfg.Validate(); err != nil {
		return fmt.Errorf("bgp: invalid configuration: %w", err)
	}
	s.mu.Lock()
	if s.phase != phaseNew {
		s.mu.Unlock()
		return errors.New("bgp: Run called more than once")
	}
	s.phase = phaseStopped // unless started below
	srv, stopWatch, err := s.start()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	defer stopWatch()
	s.srv, s.phase = srv, phaseRunning
	_, errs := s.syncLocked()
	s.mu.Unlock()
	s.notify()
	for _, err := range errs {
		s.log.Warn("BGP configuration not fully applied", "err", err)
	}
	s.log.Info("BGP speaker started", "routerID", s.cfg.RouterID, "asn", s.cfg.ASN, "listenPort", apiGlobal(&s.cfg).ListenPort)

	<-ctx.Done()
	s.shutdown()
	return nil
}

// start starts a GoBGP server that accepts no route from its peers and tells s about
// session changes.
func (s *Speaker) start() (*server.BgpServer, context.CancelFunc, error) {
	srv := server.NewBgpServer(server.LoggerOption(&gobgpLogger{log: s.log, errs: s.errs}))
	go srv.Serve()
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: apiGlobal(&s.cfg)}); err != nil {
		return nil, nil, fmt.Errorf("bgp: starting GoBGP: %w", err)
	}
	policy, assignment := apiImportPolicy()
	err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: policy, ReferExistingStatements: false})
	if err == nil {
		err = srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: assignment})
	}
	if err != nil {
		_ = srv.StopBgp(ctx, &api.StopBgpRequest{})
		return nil, nil, fmt.Errorf("bgp: setting the import policy: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	err = srv.WatchEvent(watchCtx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(*api.WatchEventResponse) { s.notify() })
	if err != nil {
		stopWatch()
		_ = srv.StopBgp(ctx, &api.StopBgpRequest{})
		return nil, nil, fmt.Errorf("bgp: watching sessions: %w", err)
	}
	return srv, stopWatch, nil
}

// shutdown withdraws every route, closes the sessions and stops GoBGP.
func (s *Speaker) shutdown() {
	ctx := context.Background()
	start := time.Now()
	s.mu.Lock()
	s.phase = phaseStopping
	srv := s.srv
	withdrawn := 0
	for _, key := range sortedKeys(s.routes) {
		if err := s.withdrawLocked(key); err != nil {
			s.log.Warn("Withdrawing a route at shutdown", "peer", key.peer, "prefix", key.prefix, "err", err)
			continue
		}
		withdrawn++
	}
	// The Cease goes into the same queue as the withdrawals, after them.
	for _, name := range slices.Sorted(maps.Keys(s.sessions)) {
		if sess := s.sessions[name]; sess.neighbor {
			req := &api.ShutdownPeerRequest{Address: sess.peer.Address.String(), Communication: "ironlb speaker shutting down"}
			if err := srv.ShutdownPeer(ctx, req); err != nil {
				s.log.Warn("Closing a BGP session at shutdown", "peer", name, "err", err)
			}
		}
	}
	s.mu.Unlock()

	// A session leaves Established once its Cease has been written, after the withdrawals.
	for open := s.established(srv); open > 0; open = s.established(srv) {
		if time.Since(start) > s.cfg.ShutdownTimeout {
			s.log.Warn("BGP sessions still open at the shutdown timeout; stopping anyway", "sessions", open, "timeout", s.cfg.ShutdownTimeout)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		s.log.Warn("Stopping GoBGP", "err", err)
	}
	s.mu.Lock()
	s.phase = phaseStopped
	s.sessions = map[string]*session{}
	s.mu.Unlock()
	s.notify()
	s.log.Info("BGP speaker stopped", "withdrawn", withdrawn, "took", time.Since(start).Round(time.Millisecond))
}

// established counts the Established sessions.
func (s *Speaker) established(srv *server.BgpServer) int {
	n := 0
	_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.State != nil && p.State.SessionState == api.PeerState_ESTABLISHED {
			n++
		}
	})
	return n
}

// SetPeers sets the desired sessions. New peers get a session, removed ones lose theirs
// (with a Cease NOTIFICATION, Peer De-configured), and a peer whose fields changed gets a
// new session. A peer that cannot be configured (an invalid field, Peer.ConfigError, an
// address used by another peer) is reported in its SessionState, not here; the others are
// configured regardless. The error reports failures to apply the change in GoBGP and paths
// that the new set of sessions leaves unannounceable.
func (s *Speaker) SetPeers(peers []Peer) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	desired, errs := compilePeers(peers, s.cfg.ASN, s.peers, now)
	refs := map[netip.Addr]peerRef{}
	for _, d := range desired {
		if d.err == "" {
			refs[d.peer.Address] = peerRef{name: d.peer.Name, us: s.presentation(&d.peer), password: d.peer.Password != ""}
		}
	}
	old := map[string]desiredPeer{}
	for _, d := range s.peers {
		old[d.peer.Name] = d
	}
	for _, d := range desired {
		if o, ok := old[d.peer.Name]; !ok || o.peer != d.peer {
			s.errs.forget(d.peer.Name) // a new configuration starts without history
		}
		delete(old, d.peer.Name)
	}
	for name := range old {
		s.errs.forget(name)
	}
	s.errs.setPeers(refs)
	changed := !slices.EqualFunc(s.peers, desired, func(a, b desiredPeer) bool { return a.peer == b.peer && a.err == b.err })
	s.peers = desired
	if s.phase == phaseRunning {
		routesChanged, syncErrs := s.syncLocked()
		errs = append(errs, syncErrs...)
		changed = changed || routesChanged
	}
	if changed {
		s.notify()
	}
	return errors.Join(errs...)
}

// presentation says how this node presents itself to a peer, for error messages.
func (s *Speaker) presentation(p *Peer) string {
	from := "the address the kernel picks to reach " + p.Address.String()
	if p.SourceAddress.IsValid() {
		from = p.SourceAddress.String()
	}
	return fmt.Sprintf("AS %d, router ID %s, from %s", p.LocalASN, addrString(s.cfg.RouterID), from)
}

// SetPaths sets the desired announcements: every route it implies is added, changed or
// withdrawn as needed, and nothing is sent for routes that did not change. Invalid paths
// are reported and left out; the others are applied.
func (s *Speaker) SetPaths(paths []Path) error {
	var errs []error
	compiled := make([]wantPath, 0, len(paths))
	for i := range paths {
		w, err := compilePath(&paths[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("path %s: %w", paths[i].Prefix, err))
			continue
		}
		compiled = append(compiled, w)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paths = compiled
	if s.phase == phaseRunning {
		changed, syncErrs := s.syncLocked()
		errs = append(errs, syncErrs...)
		if changed {
			s.notify()
		}
	}
	return errors.Join(errs...)
}

// Sessions returns the state of every peer given to SetPeers, sorted by name.
func (s *Speaker) Sessions() []SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := map[netip.Addr]*api.Peer{}
	if s.phase == phaseRunning || s.phase == phaseStopping {
		_ = s.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			if a, err := netip.ParseAddr(p.GetState().GetNeighborAddress()); err == nil {
				live[a.Unmap()] = p
			}
		})
	}
	type count struct{ v4, v6 int }
	sent := map[string]count{}
	for key := range s.routes {
		c := sent[key.peer]
		if key.prefix.Addr().Is4() {
			c.v4++
		} else {
			c.v6++
		}
		sent[key.peer] = c
	}
	out := make([]SessionState, 0, len(s.peers))
	for _, d := range s.peers {
		st := SessionState{Peer: d.peer.Name, Address: d.peer.Address, State: StateIdle}
		rec := s.errs.get(d.peer.Name)
		st.LastError, st.LastErrorTime = rec.text, rec.at
		sess := s.sessions[d.peer.Name]
		switch {
		case d.err != "":
			st.LastError, st.LastErrorTime = d.err, d.errAt
		case sess == nil:
		case sess.err != "":
			st.LastError, st.LastErrorTime = sess.err, sess.errAt
		case live[d.peer.Address] != nil:
			fillLive(&st, live[d.peer.Address], sent[d.peer.Name].v4, sent[d.peer.Name].v6)
		}
		out = append(out, st)
	}
	return out
}

// fillLive copies GoBGP's view of a session into st.
func fillLive(st *SessionState, p *api.Peer, v4Routes, v6Routes int) {
	st.State = sessionState(p.GetState().GetSessionState())
	for _, af := range p.GetAfiSafis() {
		st.PrefixesReceived += int(af.GetState().GetReceived())
	}
	if st.State != StateEstablished {
		return
	}
	if a, err := netip.ParseAddr(p.GetTransport().GetLocalAddress()); err == nil {
		st.LocalAddress = a.Unmap()
	}
	if up := p.GetTimers().GetState().GetUptime(); up != nil {
		st.EstablishedSince = up.AsTime()
	}
	v4, v6 := negotiatedFamilies(p.GetState().GetRemoteCap())
	if v4 {
		st.PrefixesSent += v4Routes
	}
	if v6 {
		st.PrefixesSent += v6Routes
	}
}
