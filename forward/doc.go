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
// chain per distinct endpoint count ("pick-N") and per distinct affinity timeout. So the
// cost per packet does not grow with the number of Services (a hash lookup per map), the
// number of rules does not grow with them either, and a change to one Service is a handful of
// element operations. Maps are shared, not one per Service: the kernel looks sets up by name
// in a list, names anonymous sets by scanning all of them, and re-checks every element of a
// map against every rule that uses it, so per-Service sets or many rules on one map cost the
// square of the Service count to load (kube-proxy's layout: 21 s for 10,000 Services here).
// README.md draws the chains and maps; in short, for a new connection:
//
//   - nat prerouting and nat output: daddr . l4proto . dport looked up in frontends-v4/v6 ->
//     pick-N, which DNATs with daddr . l4proto . dport . (numgen random mod N) looked up in
//     endpoints-v4/v6 (slot i -> the i-th usable endpoint). For ClientIP affinity,
//     pick-affinity-N first DNATs to the client's recorded endpoint if there is one.
//   - nat postrouting: record affinity (client . frontend -> endpoint, with the Service's
//     timeout); masquerade a pod reaching itself (hairpin), and connections to an endpoint
//     on another node whose frontend is an external one (LoadBalancer IP or NodePort with
//     externalTrafficPolicy Cluster), so that the reply comes back through this node.
//   - filter input, forward, output: the first packet to a frontend without endpoints is
//     rejected (ICMP port unreachable), or dropped for externalTrafficPolicy Local when only
//     other nodes have endpoints.
//
// Usable endpoints are the ready ones, or when none is ready the serving and terminating
// ones. externalTrafficPolicy Local uses this node's endpoints only and keeps the client's
// address; internalTrafficPolicy Local does the same for ClusterIPs.
//
// # Names
//
// Table, chains, sets and maps have constant names, or a constant prefix and a number
// (pick-5, affinity-update-10800s): there are no per-Service objects, so no hashed and
// truncated names are needed, and no name can exceed nftables' 256 bytes. Frontend elements
// carry a comment "namespace/name:port" (cut at 128 bytes) to say whose they are.
package forward
