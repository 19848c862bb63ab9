package forward

import (
	"strings"

	"sigs.k8s.io/knftables"
)

// writeKubeProxyLayout queues kube-proxy's nftables layout (pkg/proxy/nftables in Kubernetes
// 1.37) for the Services of in, IPv4 and policy Cluster only, for BenchmarkKubeProxyLayout10k:
// the dispatch maps are shared as in ironlb, but every Service port has its own chains and its
// endpoints sit in an inline "numgen random mod N map { ... }", an anonymous set per Service.
// Naming anonymous sets scans all sets of the table, which makes loading quadratic.
func writeKubeProxyLayout(tx *knftables.Transaction, in Input) {
	tx.Add(&knftables.Table{})
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
		prio knftables.BaseChainPriority
	}{{"nat-prerouting", knftables.PreroutingHook, knftables.DNATPriority}, {"nat-output", knftables.OutputHook, "-100"},
		{"nat-postrouting", knftables.PostroutingHook, knftables.SNATPriority}} {
		def := baseChain(c.name, knftables.NATType, c.hook, c.prio)
		tx.Add(&def)
	}
	for _, name := range []string{"services", "masquerading", "mark-for-masquerade"} {
		tx.Add(&knftables.Chain{Name: name})
	}
	tx.Add(&knftables.Map{Name: "service-ips", Type: "ipv4_addr . inet_proto . inet_service : verdict"})
	tx.Add(&knftables.Map{Name: "service-nodeports", Type: "inet_proto . inet_service : verdict"})
	for _, r := range []struct{ chain, rule string }{
		{"nat-prerouting", "jump services"},
		{"nat-output", "jump services"},
		{"nat-postrouting", "jump masquerading"},
		{"mark-for-masquerade", "mark set mark or 0x4000"},
		{"masquerading", "mark and 0x4000 == 0 return"},
		{"masquerading", "mark set mark xor 0x4000"},
		{"masquerading", "masquerade fully-random"},
		{"services", "ip daddr . meta l4proto . th dport vmap @service-ips"},
		{"services", "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"},
	} {
		tx.Add(&knftables.Rule{Chain: r.chain, Rule: r.rule})
	}
	for _, sp := range servicePorts(in.Node.Name, in.Services, in.EndpointSlices) {
		writeKubeProxyService(tx, sp)
	}
}

func writeKubeProxyService(tx *knftables.Transaction, sp *servicePort) {
	eps := usable(rendered(sp.endpoints), ipv4, false)
	if len(eps) == 0 || len(sp.clusterIPs) == 0 {
		return
	}
	base := hashAndTruncate(sp.namespace + "/" + sp.name + "/" + sp.protocol + "/" + sp.portName)
	svcChain, extChain := "service-"+base, "external-"+base
	tx.Add(&knftables.Chain{Name: svcChain})
	tx.Add(&knftables.Chain{Name: extChain})
	var m []string
	for i, ep := range eps {
		m = append(m, itoa(i)+" : "+ep.value)
	}
	cip, port := sp.clusterIPs[0].String(), itoa(int(sp.port))
	tx.Add(&knftables.Rule{Chain: svcChain, Rule: "ip daddr " + cip + " " + sp.protocol + " dport " + port +
		" ip saddr != 10.0.0.0/8 jump mark-for-masquerade"})
	tx.Add(&knftables.Rule{Chain: svcChain, Rule: "meta l4proto " + sp.protocol + " dnat ip addr . port to numgen random mod " +
		itoa(len(eps)) + " map { " + strings.Join(m, ", ") + " }"})
	tx.Add(&knftables.Rule{Chain: extChain, Rule: "jump mark-for-masquerade"})
	tx.Add(&knftables.Rule{Chain: extChain, Rule: "goto " + svcChain})
	tx.Add(&knftables.Element{Map: "service-ips", Key: []string{cip, sp.protocol, port}, Value: []string{"goto " + svcChain}})
	for _, ip := range sp.ingressIPs {
		tx.Add(&knftables.Element{Map: "service-ips", Key: []string{ip.String(), sp.protocol, port}, Value: []string{"goto " + extChain}})
	}
	if sp.nodePort != 0 {
		tx.Add(&knftables.Element{Map: "service-nodeports", Key: []string{sp.protocol, itoa(int(sp.nodePort))}, Value: []string{"goto " + extChain}})
	}
}
