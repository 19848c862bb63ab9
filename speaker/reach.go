package speaker

import (
	"encoding/binary"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/l2"
)

// Eligibility in L2 depends on what a node can do with its own interfaces, which only that
// node sees. So each node publishes its reach in its memberlist metadata, and every node's
// election reads what the others published (README, "Who may own an address").

// ReachLevel is how well a node can answer for an address in L2.
type ReachLevel uint8

// The levels, worst first.
const (
	// ReachNone: no interface to answer on (none the advertisement names, or all down).
	ReachNone ReachLevel = iota
	// ReachOffSubnet: an up interface, but none on the address's subnet. Such a node answers
	// only when no candidate is on the subnet (an address routed to the LAN without a subnet
	// of its own, where every node answers on its physical interface).
	ReachOffSubnet
	// ReachSubnet: an up interface on the address's subnet (or, with interface names, an up
	// named interface on it). The default for a node that published nothing.
	ReachSubnet
)

// ReachKey names a (pool, family): a node's reach is published per pool and family, the worst
// level over the addresses of that pool and family in use, because it must fit in
// memberlist's 512 bytes of metadata.
type ReachKey uint32

// reachKeyOf hashes a pool name and an address's family.
func reachKeyOf(pool string, ip netip.Addr) ReachKey {
	h := fnv.New32a()
	h.Write([]byte(pool))
	h.Write([]byte{0, byte(allocator.FamilyOf(ip))})
	return ReachKey(h.Sum32())
}

// Reach is what a node publishes: the (pool, family) keys where its level is below
// ReachSubnet. A missing key is ReachSubnet.
type Reach map[ReachKey]ReachLevel

// reachEntrySize is one encoded entry: the key (4 bytes) and the level.
const reachEntrySize = 5

// maxReachEntries fit in memberlist's metadata (512 bytes) with the version byte.
const maxReachEntries = (512 - 1) / reachEntrySize

// Encode renders r as memberlist metadata: a version byte, then the entries sorted by key,
// the worst levels first when they do not all fit (the others read as ReachSubnet, the
// behaviour without published reach). It reports whether all fit. EncodeMeta adds the node's
// MACs (version 2).
func (r Reach) Encode() ([]byte, bool) {
	return r.appendEntries([]byte{1}, maxReachEntries)
}

// appendEntries appends at most max entries of r to out, as Encode describes them.
func (r Reach) appendEntries(out []byte, max int) ([]byte, bool) {
	keys := slices.SortedFunc(maps.Keys(r), func(a, b ReachKey) int {
		if r[a] != r[b] {
			return int(r[a]) - int(r[b])
		}
		return int(int64(a) - int64(b))
	})
	all := len(keys) <= max
	if !all {
		keys = keys[:max]
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = binary.BigEndian.AppendUint32(out, uint32(k))
		out = append(out, byte(r[k]))
	}
	return out, all
}

// DecodeReach reads metadata written by Encode; anything else (no metadata, another version)
// reads as empty: ReachSubnet everywhere. DecodeMeta also reads version 2.
func DecodeReach(b []byte) Reach {
	if len(b) < 1 || b[0] != 1 {
		return nil
	}
	return decodeEntries(b[1:])
}

// decodeEntries reads Encode's entries.
func decodeEntries(b []byte) Reach {
	if len(b)%reachEntrySize != 0 {
		return nil
	}
	r := Reach{}
	for ; len(b) > 0; b = b[reachEntrySize:] {
		if lvl := ReachLevel(b[4]); lvl < ReachSubnet {
			r[ReachKey(binary.BigEndian.Uint32(b))] = lvl
		}
	}
	return r
}

// reachOf is this node's level for ip: ifaces are the interfaces ChooseInterfaces picked.
func reachOf(ip netip.Addr, chosen []string, ifaces []l2.Interface) ReachLevel {
	level := ReachNone
	for _, ifi := range ifaces {
		if !ifi.Up || !slices.Contains(chosen, ifi.Name) {
			continue
		}
		if slices.ContainsFunc(ifi.Prefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return ReachSubnet
		}
		level = ReachOffSubnet
	}
	return level
}
