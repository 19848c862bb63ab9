// Package fwbench holds the side-by-side benchmark of ironlb's forwarding and kube-proxy
// (BENCHMARKS.md, "Forwarding next to kube-proxy"): one API server, an ironlb speaker and a
// kube-proxy in nftables mode, each in a network namespace of its own. Run it with
// `make bench-forward-vs-kube-proxy` (root).
package fwbench
