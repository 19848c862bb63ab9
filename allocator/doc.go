// Package allocator assigns LoadBalancer addresses to Services from address
// pools. It is a pure core: plain values in, plain values out, no I/O and no
// Kubernetes client; the controller translates Services and IPPools into
// [Request] and [Pool] values and drives one [Allocator].
//
// # Model
//
// An Allocator holds a pool set and a relation "Service holds address".
// There is one record per held address, listing its holders; a Service
// holds at most one address per family. Several Services hold the same
// address only when they may share it: the same non-empty sharing key, no
// (protocol, port) in common, and the same backend (all with
// externalTrafficPolicy Cluster, or all Local with the same endpoint
// selector), as in MetalLB.
//
// The controller uses it in three phases:
//
//   - [Allocator.SetPools] whenever the pools change. The slice order is the
//     precedence between overlapping pools; a pool overlapping one before it
//     is disabled (no new addresses) and reported. Held addresses are never
//     dropped: those now in no pool are reported as [Outside].
//   - [Allocator.Restore] for every Service at start-up, with the addresses
//     its status already shows, before any Allocate: a restart never changes
//     an address.
//   - [Allocator.Allocate] on every reconcile, [Allocator.Release] when a
//     Service goes away or stops being a LoadBalancer.
//
// Allocation is deterministic. For each family the Service lacks: a
// requested address; else the requested pool; else the enabled auto-assign
// pools that admit the Service, restricted ones first (by priority, then
// name), then unrestricted ones (by name). Within a pool the lowest free
// address is taken; with a sharing key an address already held under the
// key is preferred when it can be shared. Failures are *[Error] values with
// a [Reason], and leave the state unchanged.
//
// # Cost
//
// The free space of each family of each enabled pool is a set of intervals
// in a B-tree, so taking the lowest free address, taking a given one and
// freeing one cost O(log n) in the number of intervals, whatever the pool
// size: an IPv6 /48 costs what an IPv4 /28 does, and no operation walks the
// addresses of a range. Sizes are exact 128-bit [Count] values. For pools
// with AvoidBuggyIPs, the intervals number only the IPv4 addresses not
// ending in .0 or .255, so the free space stays contiguous across /24
// boundaries. SetPools costs O(h log n) for h held addresses; Outside is
// O(h); everything else is O(log n) or linear in the number of pools.
package allocator
