// Package forward renders and applies ironlb's nftables forwarding: LoadBalancer ingress
// IP:port, NodePort on the node's addresses and ClusterIP:port, each DNATed to a random usable
// endpoint, in one table of its own (inet ironlb) that carries IPv4 and IPv6.
//
// It has three parts:
//
//   - [Render], a pure function from this node ([Node]), the Services and EndpointSlices of
//     the cluster and [Options] to a [Ruleset]: the desired table as plain data. No I/O; the
//     same input gives the same Ruleset.
//   - [Applier], a thin writer using sigs.k8s.io/knftables: its first [Applier.Sync] replaces
//     the table in one transaction (a restart after a crash never leaves traffic without
//     rules), later ones send only the elements and chains that changed, and
//     [SyncResult.Operations] tells how many operations that took.
//   - [Detect], for --forwarding=auto: whether kube-proxy's tables or chains are on the node.
//
// # Datapath
//
// All per-Service state is map and set elements; the rules are a fixed set plus one shared
// chain per distinct endpoint count ("pick-N"). So the cost per packet does not grow with the
// number of Services (a hash lookup per map), the number of rules does not grow with them
// either, and a change to one Service is a handful of element operations. Maps are shared, not
// one per Service: the kernel looks sets up by name in a list, names anonymous sets by scanning
// all of them, and checks every element of a map against every rule that uses it, so
// per-Service sets, or per-Service rules on one map, cost the square of the Service count to
// load (kube-proxy's layout: about 20 s for 10,000 Services, see BENCHMARKS.md). README.md
// draws the chains and maps; in short, for the first packet of a connection:
//
//   - nat prerouting and nat output: daddr . l4proto . dport looked up in frontends-v4/v6 ->
//     pick-N, which DNATs with daddr . dport . (numgen random mod N) looked up in
//     endpoints-<protocol>-v4/v6 (slot i -> the i-th usable endpoint).
//   - nat postrouting: masquerade a pod reaching itself (hairpin), and connections to an
//     endpoint on another node whose frontend is an external one with externalTrafficPolicy
//     Cluster (LoadBalancer IP or NodePort), so that the reply comes back through this node.
//   - filter input, forward, output: a packet to a frontend without endpoints is rejected
//     (TCP reset, ICMP port unreachable), or dropped for externalTrafficPolicy Local when only
//     other nodes have endpoints.
//
// Usable endpoints are the ready ones, or when none is ready the serving and terminating
// ones. externalTrafficPolicy Local uses this node's endpoints only and keeps the client's
// address; internalTrafficPolicy Local does the same for ClusterIPs.
//
// sessionAffinity ClientIP is the exception, done as kube-proxy does it (affinity.go): per
// Service port a prerouting chain that sends clients recorded in an endpoint's timed set to
// that endpoint, a postrouting chain that records them, and one set per endpoint.
//
// # Names
//
// Table, chains, sets and maps shared by all Services have constant names, or a constant
// prefix and a number (pick-5). The per-Service objects of ClientIP affinity have kube-proxy's
// hashed and truncated names (names.go explains the limits). Frontend elements carry a comment
// "namespace/name:port" (cut at 128 bytes) to say whose they are.
package forward
