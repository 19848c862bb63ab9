package config

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// ReservedAddresses returns the addresses no Service may take, with why: every node's InternalIP
// and ExternalIP (a Service holding one would take over the node's traffic on the ports it
// exposes) and the API server's endpoints (the kubernetes Service's EndpointSlices). A
// gateway's address is not known to the cluster; pools must leave it out.
func ReservedAddresses(nodes []*corev1.Node, apiSlices []*discoveryv1.EndpointSlice) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				out[ip.Unmap()] = fmt.Sprintf("the %s of node %s", a.Type, n.Name)
			}
		}
	}
	for _, sl := range apiSlices {
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					if _, node := out[ip.Unmap()]; !node {
						out[ip.Unmap()] = "an address of the API server (Service default/kubernetes)"
					}
				}
			}
		}
	}
	return out
}
