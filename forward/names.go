package forward

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
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
	// Before DNAT (dstnat - 10), where the destination is still the LoadBalancer IP.
	filterPreroutingPreDNATChain = "filter-prerouting-pre-dnat"
	filterOutputPreDNATChain     = "filter-output-pre-dnat"
)

// Regular chains with constant names.
const (
	servicesChain       = "services"
	endpointsCheckChain = "endpoints-check"
	rejectChain         = "reject-chain"
	masqueradingChain   = "masquerading"
	affinityRecordChain = "affinity-record"
	firewallCheckChain  = "firewall-check"
)

// Shared chains named after a parameter, never after a Service: one per distinct endpoint
// count in use, so their number does not grow with the number of Services, and their names
// stay short ("pick-" and at most 10 digits).
const pickChainPrefix = "pick-"

// Short-circuited traffic (from this node or its pods to a Local-policy external frontend) picks
// among all the Service's endpoints, whose slots start at shortCircuitSlot in the endpoint maps,
// through the chain "pick-all-N".
const (
	pickAllChainPrefix = "pick-all-"
	shortCircuitSlot   = 32768
)

func pickAllChain(n int) string { return pickAllChainPrefix + strconv.Itoa(n) }

// pickChain is the chain that DNATs to one of n endpoints of the packet's frontend.
func pickChain(n int) string { return pickChainPrefix + strconv.Itoa(n) }

// Per-Service objects exist only for sessionAffinity ClientIP (see affinity.go): per Service
// port two chains in prerouting and one in postrouting, and one timed set of clients per
// endpoint. Their names follow kube-proxy's scheme: a prefix, then a hash of the full name, then
// the name, cut to fit. The hash keeps names unique when the end is cut, and keeps apart names
// that differ in one digit. nftables names may hold [A-Za-z0-9_./-]; Kubernetes names and
// protocols use [a-z0-9-], so "/" and "__" separate the parts, and the colons of IPv6
// addresses become dots.
const (
	affinityChainPrefix       = "affinity-"        // + Service port: prerouting, all endpoints
	affinityLocalChainPrefix  = "affinity-local-"  // + Service port: prerouting, this node's endpoints
	affinityRecordChainPrefix = "affinity-record-" // + Service port: postrouting, records the choice
	affinitySetPrefix         = "affinity-"        // + endpoint: clients that used it recently

	// perServiceNameMax leaves room for the longest prefix (16 bytes) within
	// knftables.NameLengthMax (256). In practice names stay under it: a namespace and a name
	// (63 bytes each), a protocol (4), a port name (15), a timeout ("86400s"), an IPv6 address
	// (39), a port (5), the hash (8) and separators make at most 212 bytes.
	perServiceNameMax = knftables.NameLengthMax - len(affinityRecordChainPrefix)
)

// hashAndTruncate prefixes name with 8 characters of its SHA-256 in base32 and cuts the result
// to perServiceNameMax bytes.
func hashAndTruncate(name string) string {
	sum := sha256.Sum256([]byte(name))
	name = base32.StdEncoding.EncodeToString(sum[:])[:8] + "-" + name
	if len(name) > perServiceNameMax {
		name = name[:perServiceNameMax-3] + "..."
	}
	return name
}

// servicePortName is the per-Service part of affinity chain names, e.g.
// "ULMVA6XW-default/web/tcp/http/10800s". The timeout is part of it: a changed timeout makes
// new sets (nft cannot change a set's timeout) and new chains to use them.
func servicePortName(sp *servicePort) string {
	port := sp.portName
	if port == "" {
		port = strconv.Itoa(int(sp.port))
	}
	return hashAndTruncate(fmt.Sprintf("%s/%s/%s/%s/%ds", sp.namespace, sp.name, sp.protocol, port, int64(sp.affinity/time.Second)))
}

// endpointName is the per-endpoint part of affinity set names, e.g.
// "5OJB2KTY-default/web/tcp/http/10800s__198.18.1.2/8080".
func endpointName(sp *servicePort, ep endpoint) string {
	port := sp.portName
	if port == "" {
		port = strconv.Itoa(int(sp.port))
	}
	ip := strings.ReplaceAll(ep.addr.String(), ":", ".")
	return hashAndTruncate(fmt.Sprintf("%s/%s/%s/%s/%ds__%s/%d", sp.namespace, sp.name, sp.protocol, port,
		int64(sp.affinity/time.Second), ip, ep.port))
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
func noEndpointsMap(f ipFamily) string       { return "no-endpoints" + f.suffix() }
func masqueradeSet(f ipFamily) string        { return "masquerade-frontends" + f.suffix() }
func localEndpointsSet(f ipFamily) string    { return "local-endpoints" + f.suffix() }
func serviceIPsSet(f ipFamily) string        { return "service-ips" + f.suffix() }
func hairpinSet(f ipFamily) string           { return "hairpin" + f.suffix() }
func affinityFrontendsMap(f ipFamily) string { return "affinity-frontends" + f.suffix() }
func shortCircuitMap(f ipFamily) string      { return "short-circuit" + f.suffix() }
func podCIDRsSet(f ipFamily) string          { return "pod-cidrs" + f.suffix() }
func firewallSet(f ipFamily) string          { return "firewall-frontends" + f.suffix() }
func firewallAllowSet(f ipFamily) string     { return "firewall-allow" + f.suffix() }

// protocols are the transport protocols Services use, in nft spelling.
var protocols = [...]string{"tcp", "udp", "sctp"}

// endpointsMap is the map of frontend slots to endpoints for one protocol and family. It is per
// protocol because its typeof must name the port field by protocol ("tcp dport"): nft 1.0.6
// cannot read back a map declared with "th dport" in its data once it holds elements.
func endpointsMap(f ipFamily, proto string) string { return "endpoints-" + proto + f.suffix() }

// gotoVerdict is a verdict map value.
func gotoVerdict(chain string) string { return "goto " + chain }

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
