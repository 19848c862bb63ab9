package l2

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
)

// Owner elects the node that announces key among candidates (node names): the candidate
// with the smallest score, where a score is the first 8 bytes, read big-endian, of
// SHA-256(node + "#" + key.String()); equal scores go to the smaller name. It returns ""
// when there is no candidate.
//
// This is rendezvous (highest random weight) hashing: every speaker computes the same owner
// from the same candidates, with no coordination; IPs spread evenly over the nodes; and when
// a node leaves, only the keys it owned move, each to the node that ranks next for it (and
// a node that joins takes only the keys it now ranks first for). SHA-256 is used for its
// mixing, not its security: it is the same on every architecture and Go version, so mixed
// speaker versions agree.
//
// Callers keep a group of IPs that must stay on one node (a shared IP, both families of a
// Service) together by passing the group's smallest IP as key. A zone on key is ignored.
// Owner does not allocate.
func Owner(key netip.Addr, candidates []string) string {
	if len(candidates) == 0 {
		return ""
	}
	// "2001:db8:ffff:ffff:ffff:ffff:255.255.255.255" is the longest form String returns.
	var text [64]byte
	k := key.WithZone("").AppendTo(text[:0])
	best, bestScore := "", uint64(0)
	for i, node := range candidates {
		s := score(node, k)
		if i == 0 || s < bestScore || (s == bestScore && node < best) {
			best, bestScore = node, s
		}
	}
	return best
}

// score is node's rank for the key text k: smaller ranks first.
func score(node string, k []byte) uint64 {
	// A Kubernetes node name has at most 253 characters: the buffer stays on the stack.
	var buf [320]byte
	b := append(buf[:0], node...)
	b = append(b, '#')
	b = append(b, k...)
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}
