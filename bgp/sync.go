package bgp

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// compilePeers normalizes peers, sorted by name. A duplicate name is an error of the call;
// invalid peers and address conflicts are errors of the peer. An error that was already
// there keeps its time.
func compilePeers(peers []Peer, localASN uint32, previous []desiredPeer, now time.Time) ([]desiredPeer, []error) {
	var errs []error
	byName := map[string]desiredPeer{}
	for _, p := range peers {
		if _, dup := byName[p.Name]; dup {
			errs = append(errs, fmt.Errorf("peer %q is given more than once; using the first", p.Name))
			continue
		}
		n, err := p.normalize(localASN)
		d := desiredPeer{peer: n}
		switch {
		case err != nil:
			d.err = err.Error()
		case p.ConfigError != "":
			d.err = p.ConfigError
		}
		byName[p.Name] = d
	}
	out := slices.SortedFunc(maps.Values(byName), func(a, b desiredPeer) int { return cmp.Compare(a.peer.Name, b.peer.Name) })
	used := map[netip.Addr]string{}
	for i := range out {
		d := &out[i]
		if d.err != "" {
			continue
		}
		if other, ok := used[d.peer.Address]; ok {
			d.err = fmt.Sprintf("address %s is also the address of peer %s, which is configured instead (GoBGP keeps one session per address)", d.peer.Address, other)
			continue
		}
		used[d.peer.Address] = d.peer.Name
	}
	for i := range out {
		d := &out[i]
		if d.err == "" {
			continue
		}
		d.errAt = now
		for _, p := range previous {
			if p.peer.Name == d.peer.Name && p.err == d.err {
				d.errAt = p.errAt
			}
		}
	}
	return out, errs
}

// syncLocked makes GoBGP's sessions and routes match the desired ones, and reports whether
// any route changed.
func (s *Speaker) syncLocked() (bool, []error) {
	errs := s.syncPeersLocked()
	changed, routeErrs := s.syncRoutesLocked()
	return changed, append(errs, routeErrs...)
}

// syncPeersLocked removes sessions that are gone or changed, then adds the missing ones.
func (s *Speaker) syncPeersLocked() []error {
	ctx := context.Background()
	var errs []error
	want := map[string]Peer{}
	for _, d := range s.peers {
		if d.err == "" {
			want[d.peer.Name] = d.peer
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.sessions)) {
		sess := s.sessions[name]
		p, keep := want[name]
		if keep && p == sess.peer {
			continue
		}
		if sess.neighbor {
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: sess.peer.Address.String()}); err != nil {
				errs = append(errs, fmt.Errorf("removing the session of peer %s: %w", name, err))
				continue
			}
			sess.neighbor = false
		}
		if keep {
			s.log.Info("Replacing BGP session with changed configuration", "peer", name)
			continue // the VRF and its routes stay for the new neighbor
		}
		if err := s.srv.DeleteVrf(ctx, &api.DeleteVrfRequest{Name: sess.vrf}); err != nil {
			errs = append(errs, fmt.Errorf("removing the routes of peer %s: %w", name, err))
			continue
		}
		for key := range s.routes {
			if key.peer == name {
				delete(s.routes, key)
			}
		}
		delete(s.sessions, name)
		s.log.Info("Removed BGP session", "peer", name)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		p := want[name]
		sess := s.sessions[name]
		if sess != nil && sess.neighbor {
			continue
		}
		if sess == nil {
			s.vrfs++
			vrf, err := apiVRF(name, s.vrfs)
			if err == nil {
				err = s.srv.AddVrf(ctx, &api.AddVrfRequest{Vrf: vrf})
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("creating the routing table of peer %s: %w", name, err))
				continue
			}
			sess = &session{vrf: name}
			s.sessions[name] = sess
		}
		sess.peer = p
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(&p, sess.vrf, s.cfg.ConnectRetry)}); err != nil {
			text := fmt.Sprintf("configuring the session in GoBGP: %v", err)
			if sess.err != text {
				sess.err, sess.errAt = text, time.Now()
			}
			continue
		}
		sess.neighbor, sess.err = true, ""
		s.log.Info("Configured BGP session", "peer", name, "address", p.Address, "peerASN", p.PeerASN, "localASN", p.LocalASN)
	}
	return errs
}

// syncRoutesLocked withdraws the routes no longer wanted and adds the new or changed ones.
func (s *Speaker) syncRoutesLocked() (bool, []error) {
	peers := make(map[string]Peer, len(s.sessions))
	for name, sess := range s.sessions {
		peers[name] = sess.peer
	}
	want, errs := expand(s.paths, peers, s.cfg.NextHopIPv4, s.cfg.NextHopIPv6)
	added, withdrawn := 0, 0
	for _, key := range sortedKeys(s.routes) {
		if _, ok := want[key]; ok {
			continue
		}
		if err := s.withdrawLocked(key); err != nil {
			errs = append(errs, err)
			continue
		}
		withdrawn++
	}
	for _, key := range sortedKeys(want) {
		a := want[key]
		if cur, ok := s.routes[key]; ok && cur.equal(&a) {
			continue
		}
		p, err := apiPath(key.prefix, &a, false)
		if err == nil {
			_, err = s.srv.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_VRF, VrfId: s.sessions[key.peer].vrf, Path: p})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("announcing %s to peer %s: %w", key.prefix, key.peer, err))
			continue
		}
		s.routes[key] = a
		added++
	}
	if added+withdrawn > 0 {
		s.log.Debug("BGP routes updated", "announced", added, "withdrawn", withdrawn, "total", len(s.routes))
	}
	return added+withdrawn > 0, errs
}

// withdrawLocked removes one route from GoBGP, which withdraws it from its peer.
func (s *Speaker) withdrawLocked(key routeKey) error {
	a := s.routes[key]
	p, err := apiPath(key.prefix, &a, true)
	if err == nil {
		err = s.srv.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_VRF, VrfId: s.sessions[key.peer].vrf, Path: p})
	}
	if err != nil {
		return fmt.Errorf("withdrawing %s from peer %s: %w", key.prefix, key.peer, err)
	}
	delete(s.routes, key)
	return nil
}

func sortedKeys(m map[routeKey]attrs) []routeKey {
	return slices.SortedFunc(maps.Keys(m), compareRouteKeys)
}
