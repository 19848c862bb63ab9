package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Path is one desired announcement: a prefix, the peers it goes to and its attributes.
// Usually the planner makes one per (Service IP, BGPAdvertisement).
type Path struct {
	// Prefix is the announced prefix, in canonical form (no host bits set): a /32 or /128
	// for one address, shorter with aggregation.
	Prefix netip.Prefix
	// Peers names the sessions (Peer.Name) that receive the path. nil: every configured
	// session. A non-nil empty slice: none. A name with no configured session is not an
	// error: the path is announced on it once SetPeers configures it.
	Peers []string
	// NextHop is the path's next hop, in Prefix's family. Zero (the usual case): the
	// session's local address when Prefix is in the session's family, otherwise
	// Config.NextHopIPv6 or Config.NextHopIPv4.
	NextHop netip.Addr
	// Communities are standard communities "A:B" (RFC 1997), each part 0-65535.
	Communities []string
	// LargeCommunities are large communities "A:B:C" (RFC 8092), each part 0-4294967295; a
	// "large:" prefix, as BGPAdvertisement writes them, is accepted.
	LargeCommunities []string
	// LocalPref sets LOCAL_PREF on iBGP sessions; nil: GoBGP sends 100, the RFC default. It
	// is never sent on eBGP sessions, which do not carry it (RFC 4271 section 5.1.5).
	LocalPref *uint32
}

// Two Paths for the same prefix and peer are merged into one route: their communities and
// large communities are joined, the higher LocalPref wins, and an explicit NextHop wins
// over none; two different explicit next hops are an error (the lower address is used).

// largeCommunity is a parsed RFC 8092 community.
type largeCommunity struct{ ASN, Local1, Local2 uint32 }

// attrs are a route's path attributes, in canonical form (sorted, without duplicates) so
// that equal attributes compare equal.
type attrs struct {
	nextHop      netip.Addr // zero: the session's local address
	communities  []uint32
	large        []largeCommunity
	localPref    uint32
	hasLocalPref bool
}

func (a *attrs) equal(b *attrs) bool {
	return a.nextHop == b.nextHop && a.localPref == b.localPref && a.hasLocalPref == b.hasLocalPref &&
		slices.Equal(a.communities, b.communities) && slices.Equal(a.large, b.large)
}

// wantPath is a validated Path.
type wantPath struct {
	prefix netip.Prefix
	peers  []string // nil: all
	attrs  attrs
}

// routeKey identifies one route given to GoBGP: a prefix in one peer's RIB.
type routeKey struct {
	peer   string
	prefix netip.Prefix
}

func compareRouteKeys(a, b routeKey) int {
	if c := cmp.Compare(a.peer, b.peer); c != 0 {
		return c
	}
	if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.prefix.Bits(), b.prefix.Bits())
}

// compilePath checks a Path and converts it to its canonical form.
func compilePath(p *Path) (wantPath, error) {
	w := wantPath{prefix: p.Prefix, peers: p.Peers}
	switch {
	case !p.Prefix.IsValid():
		return w, errors.New("prefix is not set")
	case p.Prefix.Addr().Zone() != "" || p.Prefix.Addr().Is4In6():
		return w, fmt.Errorf("prefix %s must be a plain IPv4 or IPv6 prefix", p.Prefix)
	case p.Prefix != p.Prefix.Masked():
		return w, fmt.Errorf("prefix %s has host bits set (the prefix is %s)", p.Prefix, p.Prefix.Masked())
	}
	if p.Peers != nil {
		w.peers = slices.Clone(p.Peers)
	}
	if nh := p.NextHop; nh.IsValid() {
		if nh.Is4() != p.Prefix.Addr().Is4() || nh.Is4In6() || nh.Zone() != "" || nh.IsUnspecified() || nh.IsMulticast() {
			return w, fmt.Errorf("next hop %s must be a unicast address in the family of %s", nh, p.Prefix)
		}
		w.attrs.nextHop = nh
	}
	for _, s := range p.Communities {
		c, err := parseCommunity(s)
		if err != nil {
			return w, err
		}
		w.attrs.communities = append(w.attrs.communities, c)
	}
	for _, s := range p.LargeCommunities {
		c, err := parseLargeCommunity(s)
		if err != nil {
			return w, err
		}
		w.attrs.large = append(w.attrs.large, c)
	}
	w.attrs.communities = sortedUnique(w.attrs.communities, cmp.Compare[uint32])
	w.attrs.large = sortedUnique(w.attrs.large, compareLarge)
	if p.LocalPref != nil {
		w.attrs.localPref, w.attrs.hasLocalPref = *p.LocalPref, true
	}
	return w, nil
}

// parseCommunity parses a standard community "A:B" (RFC 1997) into its 32-bit value.
func parseCommunity(s string) (uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want A:B with A and B from 0 to 65535", s)
	}
	hi, err1 := strconv.ParseUint(a, 10, 16)
	lo, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: want A:B with A and B from 0 to 65535", s)
	}
	return uint32(hi)<<16 | uint32(lo), nil
}

// parseLargeCommunity parses a large community "A:B:C" or "large:A:B:C" (RFC 8092).
func parseLargeCommunity(s string) (largeCommunity, error) {
	parts := strings.Split(strings.TrimPrefix(s, "large:"), ":")
	if len(parts) != 3 {
		return largeCommunity{}, fmt.Errorf("large community %q: want A:B:C with each part from 0 to 4294967295", s)
	}
	var v [3]uint32
	for i, part := range parts {
		n, err := strconv.ParseUint(part, 10, 32)
		if err != nil {
			return largeCommunity{}, fmt.Errorf("large community %q: want A:B:C with each part from 0 to 4294967295", s)
		}
		v[i] = uint32(n)
	}
	return largeCommunity{v[0], v[1], v[2]}, nil
}

func compareLarge(a, b largeCommunity) int {
	if c := cmp.Compare(a.ASN, b.ASN); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Local1, b.Local1); c != 0 {
		return c
	}
	return cmp.Compare(a.Local2, b.Local2)
}

func sortedUnique[T any](s []T, compare func(a, b T) int) []T {
	slices.SortFunc(s, compare)
	return slices.CompactFunc(s, func(a, b T) bool { return compare(a, b) == 0 })
}

// expand turns the desired paths into routes, one per (peer, prefix), for the peers in
// sessions (by name). It resolves cross-family next hops from v4 and v6 (Config's
// NextHopIPv4 and NextHopIPv6) and merges paths that meet on the same route. Routes it
// cannot make are left out and reported.
func expand(paths []wantPath, sessions map[string]Peer, v4, v6 netip.Addr) (map[routeKey]attrs, []error) {
	routes := make(map[routeKey]attrs)
	var errs []error
	all := make([]string, 0, len(sessions))
	for name := range sessions {
		all = append(all, name)
	}
	slices.Sort(all)
	for i := range paths {
		p := &paths[i]
		targets := p.peers
		if targets == nil {
			targets = all
		}
		for _, name := range targets {
			peer, ok := sessions[name]
			if !ok {
				continue
			}
			a := p.attrs
			if !a.nextHop.IsValid() && p.prefix.Addr().Is4() != peer.Address.Is4() {
				a.nextHop = v4
				if !p.prefix.Addr().Is4() {
					a.nextHop = v6
				}
				if !a.nextHop.IsValid() {
					errs = append(errs, fmt.Errorf("path %s to peer %s: not announced: an %s prefix over an %s session needs an explicit next hop (Config.NextHop%s)",
						p.prefix, name, family(p.prefix.Addr()), family(peer.Address), family(p.prefix.Addr())))
					continue
				}
			}
			key := routeKey{peer: name, prefix: p.prefix}
			if cur, ok := routes[key]; ok {
				merged, err := merge(cur, a)
				if err != nil {
					errs = append(errs, fmt.Errorf("path %s to peer %s: %w", p.prefix, name, err))
				}
				a = merged
			}
			routes[key] = a
		}
	}
	return routes, errs
}

// merge combines the attributes of two paths for the same route.
func merge(a, b attrs) (attrs, error) {
	var err error
	m := attrs{
		nextHop:      a.nextHop,
		communities:  sortedUnique(slices.Concat(a.communities, b.communities), cmp.Compare[uint32]),
		large:        sortedUnique(slices.Concat(a.large, b.large), compareLarge),
		localPref:    max(a.localPref, b.localPref),
		hasLocalPref: a.hasLocalPref || b.hasLocalPref,
	}
	switch {
	case !a.nextHop.IsValid():
		m.nextHop = b.nextHop
	case b.nextHop.IsValid() && b.nextHop != a.nextHop:
		if b.nextHop.Less(a.nextHop) {
			m.nextHop = b.nextHop
		}
		err = fmt.Errorf("conflicting next hops %s and %s; using %s", a.nextHop, b.nextHop, m.nextHop)
	}
	return m, err
}

// family names an address's family for messages.
func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
