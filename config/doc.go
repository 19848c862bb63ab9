// Package config turns ironlb's custom resources and the cluster's Services and
// EndpointSlices into the one validated model both binaries read, so the controller, the
// speakers and the kubectl plugin cannot disagree:
//
//   - Class: which Services ironlb handles (spec.loadBalancerClass).
//   - RequestFor: what a Service asks the allocator for (annotations, spec, families).
//   - IngressIPs: the addresses a Service holds (status.loadBalancer.ingress).
//   - CompilePool (the allocator's view of an IPPool, with its restrictions) and CompilePools
//     / Pools.Of (the pool an address belongs to, by v1alpha1.ComparePools precedence).
//   - CompileL2Ads, CompileBGPAds: the advertisements, with their selections.
//   - Usable: the endpoint-readiness rule (kube-proxy's), and ServingNodes, the nodes it
//     leaves a Service's traffic to.
//   - ReservedAddresses: the addresses no Service may take.
//
// Everything here is pure: plain values in, plain values out, no I/O.
package config
