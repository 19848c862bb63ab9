package forward

import (
	"fmt"
	"strconv"
	"time"

	"sigs.k8s.io/knftables"
)

// The table. Everything ironlb forwards lives in this one table, so its objects need no prefix
// of their own, and replacing or deleting the table touches nothing else on the node.
const (
	// TableName is the name of ironlb's nftables table.
	TableName = "ironlb"
	// TableFamily is its family: one inet table carries both IPv4 and IPv6.
	TableFamily = knftables.InetFamily
)

// Base chains: one per hook and type we need. Their names are constants.
const (
	natPreroutingChain  = "nat-prerouting"
	natOutputChain      = "nat-output"
	natPostroutingChain = "nat-postrouting"
	filterInputChain    = "filter-input"
	filterForwardChain  = "filter-forward"
	filterOutputChain   = "filter-output"
)

// Regular chains with constant names.
const (
	servicesChain       = "services"
	endpointsCheckChain = "endpoints-check"
	rejectChain         = "reject-chain"
	masqueradingChain   = "masquerading"
	affinityRecordChain = "affinity-record"
)

// Shared chains named after a parameter, never after a Service. There is one per distinct
// value in use (endpoint count or affinity timeout), so their number does not grow with the
// number of Services, and their names stay short: "pick-" plus at most 10 digits, well under
// knftables.NameLengthMax (256).
const (
	pickChainPrefix           = "pick-"
	pickAffinityChainPrefix   = "pick-affinity-"
	affinityUpdateChainPrefix = "affinity-update-"
)

// pickChain is the chain that DNATs to one of n endpoints of the packet's frontend.
func pickChain(n int) string { return pickChainPrefix + strconv.Itoa(n) }

// pickAffinityChain is pickChain(n) preceded by the ClientIP affinity lookup.
func pickAffinityChain(n int) string { return pickAffinityChainPrefix + strconv.Itoa(n) }

// affinityUpdateChain records a client's endpoint with the given timeout.
func affinityUpdateChain(timeout time.Duration) string {
	return affinityUpdateChainPrefix + strconv.FormatInt(int64(timeout/time.Second), 10) + "s"
}

// ipFamily selects the per-family half of the table. Sets and maps in an inet table are typed,
// so every set or map that holds addresses exists once per family.
type ipFamily int

const (
	ipv4 ipFamily = iota
	ipv6
)

var families = [...]ipFamily{ipv4, ipv6}

func (f ipFamily) String() string { return [...]string{"IPv4", "IPv6"}[f] }

// nft is the protocol keyword in rules: "ip" or "ip6".
func (f ipFamily) nft() string { return [...]string{"ip", "ip6"}[f] }

// addrType is the nft address data type.
func (f ipFamily) addrType() string { return [...]string{"ipv4_addr", "ipv6_addr"}[f] }

// suffix ends the name of every per-family set and map.
func (f ipFamily) suffix() string { return [...]string{"-v4", "-v6"}[f] }

// Per-family sets and maps. Their names are constants plus the family suffix.
func frontendsMap(f ipFamily) string         { return "frontends" + f.suffix() }
func endpointsMap(f ipFamily) string         { return "endpoints" + f.suffix() }
func noEndpointsMap(f ipFamily) string       { return "no-endpoints" + f.suffix() }
func externalIPsSet(f ipFamily) string       { return "external-ips" + f.suffix() }
func localEndpointsSet(f ipFamily) string    { return "local-endpoints" + f.suffix() }
func hairpinSet(f ipFamily) string           { return "hairpin" + f.suffix() }
func affinityMap(f ipFamily) string          { return "affinity" + f.suffix() }
func affinityFrontendsMap(f ipFamily) string { return "affinity-frontends" + f.suffix() }

// gotoVerdict is a verdict map value.
func gotoVerdict(chain string) string { return "goto " + chain }

// jumpVerdict is a verdict map value that returns to the caller.
func jumpVerdict(chain string) string { return "jump " + chain }

// elementComment is the comment on frontend elements: the Service port that owns them, so
// `nft list map inet ironlb frontends-v4` answers "whose is this?". Namespace and name are at
// most 63 characters each and a port name 15, so the comment fits knftables.CommentLengthMax
// (128) except for the longest names, which are cut.
func elementComment(namespace, name, port string) string {
	c := fmt.Sprintf("%s/%s:%s", namespace, name, port)
	if len(c) > knftables.CommentLengthMax {
		c = c[:knftables.CommentLengthMax]
	}
	return c
}
