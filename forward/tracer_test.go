package forward

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

// The tracer walks the first packet of a connection through the rules a knftables.Fake holds,
// as kube-proxy's tests do: it reads the rule strings the renderer wrote (only the shapes it
// writes, which it recognizes with the patterns below) and looks elements up in the fake's
// sets and maps. It answers where the packet may go: "dnat A B(masq)" lists every endpoint the
// random pick can choose, marked when postrouting masquerades the connection; or "reject",
// "drop", or "none" when ironlb leaves the packet alone.
var (
	reVmap       = regexp.MustCompile(`^(ip6?) daddr \. meta l4proto \. th dport vmap @(\S+)$`)
	rePick       = regexp.MustCompile(`^meta l4proto (\w+) dnat (ip6?) addr \. port to (ip6?) daddr \. \w+ dport \. numgen random mod (\d+)(?: offset (\d+))? map @(\S+)$`)
	reFromNode   = regexp.MustCompile(`^fib saddr type local (ip6?) daddr \. meta l4proto \. th dport vmap @(\S+)$`)
	reFromPods   = regexp.MustCompile(`^(ip6?) saddr @(\S+) (ip6?) daddr \. meta l4proto \. th dport vmap @(\S+)$`)
	reAffinity   = regexp.MustCompile(`^(ip6?) saddr @(\S+) meta l4proto (\w+) dnat (ip6?) to (\S+)$`)
	reServiceIP  = regexp.MustCompile(`^meta l4proto \{ tcp, udp, sctp \} (ip6?) daddr @(\S+) goto (\S+)$`)
	reNfprotoGo  = regexp.MustCompile(`^meta nfproto (ipv[46]) goto (\S+)$`)
	reHairpin    = regexp.MustCompile(`^ct status dnat (ip6?) saddr \. (ip6?) daddr @(\S+) masquerade`)
	reFirewall   = regexp.MustCompile(`^(ip6?) daddr \. meta l4proto \. th dport @(\S+) (ip6?) daddr \. meta l4proto \. th dport \. (ip6?) saddr != @(\S+) drop$`)
	reMasquerade = regexp.MustCompile(`^meta l4proto \{ tcp, udp, sctp \} ct status dnat (ip6?) daddr != @(\S+) ct original (ip6?) daddr \. meta l4proto \. ct original proto-dst @(\S+) masquerade`)
)

type tracePacket struct {
	src, dst string // addresses
	proto    string // "tcp", "udp", "sctp"
	port     int
}

type tracer struct {
	t     *testing.T
	table *knftables.FakeTable
}

func (tr *tracer) rules(chain string) []string {
	c := tr.table.Chains[chain]
	if c == nil {
		tr.t.Fatalf("no chain %q", chain)
	}
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.Rule)
	}
	return out
}

func (tr *tracer) lookup(name string, key ...string) (string, bool) {
	k := strings.Join(key, " . ")
	if m := tr.table.Maps[name]; m != nil {
		for _, e := range m.Elements {
			if strings.Join(e.Key, " . ") == k {
				return strings.Join(e.Value, " . "), true
			}
		}
		return "", false
	}
	s := tr.table.Sets[name]
	if s == nil {
		tr.t.Fatalf("no set or map %q", name)
	}
	for _, e := range s.Elements {
		if strings.Join(e.Key, " . ") == k {
			return "", true
		}
	}
	return "", false
}

func nftFamily(addr string) string {
	if netip.MustParseAddr(addr).Is4() {
		return "ip"
	}
	return "ip6"
}

// trace returns where the first packet of a new connection goes.
func (tr *tracer) trace(p tracePacket) string {
	if tr.firewalled(p) {
		return "drop"
	}
	eps := tr.dnat(p, servicesChain)
	if eps == nil {
		return tr.filter(p)
	}
	var out []string
	for _, ep := range eps {
		if tr.masquerades(p, ep) {
			ep += "(masq)"
		}
		out = append(out, ep)
	}
	slices.Sort(out)
	return "dnat " + strings.Join(slices.Compact(out), " ")
}

// dnat walks a nat chain and returns the possible DNAT destinations, nil for none.
func (tr *tracer) dnat(p tracePacket, chain string) []string {
	fam, port := nftFamily(p.dst), strconv.Itoa(p.port)
	for _, rule := range tr.rules(chain) {
		if m := reVmap.FindStringSubmatch(rule); m != nil {
			if m[1] != fam {
				continue
			}
			v, ok := tr.lookup(m[2], p.dst, p.proto, port)
			if !ok {
				continue
			}
			target, isGoto := strings.CutPrefix(v, "goto ")
			if !isGoto {
				tr.t.Fatalf("verdict %q in %s", v, m[2])
			}
			return tr.dnat(p, target)
		} else if m := rePick.FindStringSubmatch(rule); m != nil {
			if m[1] != p.proto || m[2] != fam {
				continue
			}
			n, _ := strconv.Atoi(m[4])
			offset, _ := strconv.Atoi(m[5])
			var eps []string
			for slot := offset; slot < offset+n; slot++ {
				v, ok := tr.lookup(m[6], p.dst, port, strconv.Itoa(slot))
				if !ok {
					tr.t.Fatalf("%s has no slot %d for %s:%d (pick of %d)", m[6], slot, p.dst, p.port, n)
				}
				a, pt, _ := strings.Cut(v, " . ")
				eps = append(eps, netip.AddrPortFrom(netip.MustParseAddr(a), uint16(atoi(pt))).String())
			}
			return eps
		} else if m := reFromNode.FindStringSubmatch(rule); m != nil {
			if m[1] == fam && slices.Contains(testNodeAddrs(), p.src) {
				if v, ok := tr.lookup(m[2], p.dst, p.proto, port); ok {
					return tr.dnat(p, strings.TrimPrefix(v, "goto "))
				}
			}
		} else if m := reFromPods.FindStringSubmatch(rule); m != nil {
			if m[1] == fam && tr.inIntervals(m[2], netip.MustParseAddr(p.src)) {
				if v, ok := tr.lookup(m[4], p.dst, p.proto, port); ok {
					return tr.dnat(p, strings.TrimPrefix(v, "goto "))
				}
			}
		} else if m := reAffinity.FindStringSubmatch(rule); m != nil {
			if m[1] == fam && m[3] == p.proto {
				if _, ok := tr.lookup(m[2], p.src); ok {
					return []string{m[5]}
				}
			}
		} else if m := reNfprotoGo.FindStringSubmatch(rule); m != nil {
			if (m[1] == "ipv4") == (fam == "ip") {
				return tr.dnat(p, m[2])
			}
		} else if target, ok := strings.CutPrefix(rule, "goto "); ok {
			return tr.dnat(p, target)
		} else {
			tr.t.Fatalf("tracer does not know rule %q in chain %s", rule, chain)
		}
	}
	return nil
}

// filter is what the filter hooks do to a packet that was not DNATed.
func (tr *tracer) filter(p tracePacket) string {
	fam := nftFamily(p.dst)
	for _, rule := range tr.rules(endpointsCheckChain) {
		if m := reServiceIP.FindStringSubmatch(rule); m != nil {
			if _, ok := tr.lookup(m[2], p.dst); ok && m[1] == fam && m[3] == rejectChain {
				return "reject"
			}
			continue
		}
		m := reVmap.FindStringSubmatch(rule)
		if m == nil {
			tr.t.Fatalf("tracer does not know rule %q in chain %s", rule, endpointsCheckChain)
		}
		if m[1] != fam {
			continue
		}
		v, ok := tr.lookup(m[2], p.dst, p.proto, strconv.Itoa(p.port))
		switch {
		case !ok:
		case v == "goto "+rejectChain:
			return "reject"
		case v == "drop":
			return "drop"
		default:
			tr.t.Fatalf("verdict %q in %s", v, m[2])
		}
	}
	return "none"
}

// firewalled tells whether the pre-DNAT source range check drops p.
func (tr *tracer) firewalled(p tracePacket) bool {
	fam, port := nftFamily(p.dst), strconv.Itoa(p.port)
	for _, rule := range tr.rules(firewallCheckChain) {
		m := reFirewall.FindStringSubmatch(rule)
		if m == nil {
			tr.t.Fatalf("tracer does not know rule %q in chain %s", rule, firewallCheckChain)
		}
		if m[1] != fam {
			continue
		}
		if _, ok := tr.lookup(m[2], p.dst, p.proto, port); !ok {
			continue
		}
		return !tr.allowed(m[5], p.dst+" . "+p.proto+" . "+port, netip.MustParseAddr(p.src))
	}
	return false
}

// testNodeAddrs are the addresses for which "fib saddr type local" holds.
func testNodeAddrs() []string {
	var out []string
	for _, a := range testNode.Addresses {
		out = append(out, a.String())
	}
	return out
}

// inIntervals looks a up in an interval set of prefixes.
func (tr *tracer) inIntervals(name string, a netip.Addr) bool {
	for _, e := range tr.table.Sets[name].Elements {
		if p, err := netip.ParsePrefix(strings.Join(e.Key, " . ")); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// allowed looks src up in an interval set of "frontend . source range" elements.
func (tr *tracer) allowed(name, frontend string, src netip.Addr) bool {
	for _, e := range tr.table.Sets[name].Elements {
		k := strings.Join(e.Key, " . ")
		i := strings.LastIndex(k, " . ")
		fe, last := k[:max(i, 0)], k[i+3:]
		if fe != frontend {
			continue
		}
		if pfx, err := netip.ParsePrefix(last); err == nil && pfx.Contains(src) {
			return true
		}
		if a, err := netip.ParseAddr(last); err == nil && a == src {
			return true
		}
	}
	return false
}

// masquerades tells whether postrouting masquerades a connection of p DNATed to ep.
func (tr *tracer) masquerades(p tracePacket, ep string) bool {
	epAddr := netip.MustParseAddrPort(ep).Addr().String()
	fam := nftFamily(p.dst)
	for _, rule := range tr.rules(masqueradingChain) {
		if m := reHairpin.FindStringSubmatch(rule); m != nil {
			if m[1] == fam && p.src == epAddr {
				if _, ok := tr.lookup(m[3], epAddr, epAddr); ok {
					return true
				}
			}
		} else if m := reMasquerade.FindStringSubmatch(rule); m != nil {
			if m[1] != fam {
				continue
			}
			_, local := tr.lookup(m[2], epAddr)
			_, listed := tr.lookup(m[4], p.dst, p.proto, strconv.Itoa(p.port))
			if !local && listed {
				return true
			}
		} else {
			tr.t.Fatalf("tracer does not know rule %q in chain %s", rule, masqueradingChain)
		}
	}
	return false
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(fmt.Sprintf("atoi(%q)", s))
	}
	return n
}

// TestTrace walks packets through the rendered table of each scenario.
func TestTrace(t *testing.T) {
	const (
		lanClient = "198.51.100.10"
		podHere   = "198.18.2.9" // a pod on this node that is no endpoint
		lanV6     = "2001:db8:100::10"
	)
	for _, c := range []struct {
		scenario string
		p        tracePacket
		want     string
	}{
		{"cluster-policy", tracePacket{lanClient, "203.0.113.10", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080(masq)"},
		{"cluster-policy", tracePacket{lanClient, "198.51.100.1", "tcp", 30080}, "dnat 198.18.1.2:8080 198.18.3.2:8080(masq)"},
		{"cluster-policy", tracePacket{podHere, "198.18.0.10", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080"},
		{"cluster-policy", tracePacket{"198.18.1.2", "198.18.0.10", "tcp", 80}, "dnat 198.18.1.2:8080(masq) 198.18.3.2:8080"},
		{"cluster-policy", tracePacket{lanClient, "203.0.113.10", "udp", 80}, "reject"},
		{"cluster-policy", tracePacket{lanClient, "203.0.113.10", "tcp", 81}, "reject"},
		{"cluster-policy", tracePacket{podHere, "198.18.0.10", "tcp", 443}, "reject"},
		{"cluster-policy", tracePacket{lanClient, "198.51.100.1", "tcp", 22}, "none"},
		{"cluster-policy", tracePacket{lanV6, "2001:db8:100::1", "tcp", 30080}, "none"},
		{"local-policy", tracePacket{lanClient, "203.0.113.11", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"local-policy", tracePacket{lanClient, "198.51.100.1", "tcp", 30081}, "dnat 198.18.1.2:8080"},
		{"local-policy", tracePacket{podHere, "198.18.0.11", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080"},
		{"local-policy", tracePacket{lanClient, "203.0.113.12", "tcp", 80}, "drop"},
		{"local-policy", tracePacket{lanClient, "198.51.100.1", "tcp", 30082}, "drop"},
		{"local-policy", tracePacket{podHere, "198.18.0.12", "tcp", 80}, "dnat 198.18.3.3:8080"},
		// From this node or its pods, a Local-policy external frontend goes to any endpoint.
		{"local-policy", tracePacket{podHere, "203.0.113.12", "tcp", 80}, "dnat 198.18.3.3:8080"},
		{"local-policy", tracePacket{"198.51.100.1", "203.0.113.12", "tcp", 80}, "dnat 198.18.3.3:8080"},
		{"local-policy", tracePacket{"198.51.100.1", "198.51.100.1", "tcp", 30082}, "dnat 198.18.3.3:8080"},
		{"local-policy", tracePacket{podHere, "203.0.113.11", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080"},
		{"local-policy", tracePacket{"198.18.9.9", "203.0.113.12", "tcp", 80}, "drop"}, // a pod elsewhere: routed here, external
		{"no-endpoints", tracePacket{lanClient, "203.0.113.13", "tcp", 80}, "reject"},
		{"no-endpoints", tracePacket{lanClient, "198.51.100.1", "tcp", 30083}, "reject"},
		{"no-endpoints", tracePacket{podHere, "198.18.0.14", "tcp", 80}, "reject"},
		{"no-endpoints", tracePacket{lanClient, "203.0.113.14", "tcp", 80}, "reject"},
		{"terminating", tracePacket{lanClient, "203.0.113.15", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"affinity", tracePacket{lanClient, "203.0.113.16", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080(masq)"},
		{"affinity", tracePacket{podHere, "198.18.0.17", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080"},
		{"protocols", tracePacket{lanClient, "203.0.113.18", "udp", 53}, "dnat 198.18.1.2:5353"},
		{"protocols", tracePacket{lanClient, "203.0.113.18", "tcp", 53}, "dnat 198.18.1.2:5353"},
		{"protocols", tracePacket{lanClient, "203.0.113.18", "sctp", 9999}, "dnat 198.18.1.2:9000"},
		{"protocols", tracePacket{lanClient, "198.51.100.1", "sctp", 30999}, "dnat 198.18.1.2:9000"},
		{"dual-stack", tracePacket{lanV6, "2001:db8:113::19", "tcp", 80}, "dnat [2001:db8:1::2]:8080 [2001:db8:3::2]:8080(masq)"},
		{"dual-stack", tracePacket{lanV6, "2001:db8:100::1", "tcp", 30089}, "dnat [2001:db8:1::2]:8080 [2001:db8:3::2]:8080(masq)"},
		{"dual-stack", tracePacket{"2001:db8:2::9", "2001:db8:18::19", "tcp", 80}, "dnat [2001:db8:1::2]:8080 [2001:db8:3::2]:8080"},
		{"dual-stack", tracePacket{lanClient, "203.0.113.19", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080(masq)"},
		{"internal-local", tracePacket{podHere, "198.18.0.20", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"source-ranges", tracePacket{lanClient, "203.0.113.21", "tcp", 80}, "drop"},
		{"source-ranges", tracePacket{"192.0.2.5", "203.0.113.21", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"source-ranges", tracePacket{"198.51.100.130", "203.0.113.21", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"source-ranges", tracePacket{"198.51.100.1", "203.0.113.21", "tcp", 80}, "drop"},               // the node: not in a range
		{"source-ranges", tracePacket{lanClient, "198.51.100.1", "tcp", 30021}, "dnat 198.18.1.2:8080"}, // NodePorts are not checked
		{"source-ranges", tracePacket{lanClient, "198.18.0.21", "tcp", 80}, "dnat 198.18.1.2:8080"},     // nor ClusterIPs
		{"source-ranges", tracePacket{lanV6, "2001:db8:113::21", "tcp", 80}, "dnat [2001:db8:1::2]:8080"},
		{"source-ranges", tracePacket{lanClient, "203.0.113.21", "tcp", 81}, "reject"},
		{"source-ranges", tracePacket{lanClient, "203.0.113.22", "tcp", 80}, "drop"},
		{"source-ranges", tracePacket{"198.51.100.2", "203.0.113.22", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"source-ranges", tracePacket{"203.0.113.22", "203.0.113.22", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"source-ranges", tracePacket{lanClient, "203.0.113.23", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"external-ips", tracePacket{lanClient, "192.0.2.30", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080(masq)"},
		{"external-ips", tracePacket{lanClient, "192.0.2.30", "tcp", 81}, "none"},
		{"external-ips", tracePacket{lanClient, "192.0.2.31", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"external-ips", tracePacket{lanClient, "198.51.100.1", "tcp", 30031}, "dnat 198.18.1.2:8080"},
		{"external-ips", tracePacket{lanClient, "192.0.2.32", "tcp", 80}, "reject"},
		{"ip-mode-proxy", tracePacket{lanClient, "203.0.113.24", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"ip-mode-proxy", tracePacket{lanClient, "203.0.113.25", "tcp", 80}, "none"},
		{"topology", tracePacket{podHere, "198.18.0.40", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.3:8080"},
		{"topology", tracePacket{podHere, "198.18.0.41", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080"},
		{"topology", tracePacket{podHere, "198.18.0.42", "tcp", 80}, "dnat 198.18.1.2:8080"},
		{"topology", tracePacket{podHere, "198.18.0.43", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080"},
		{"options", tracePacket{podHere, "198.18.0.10", "tcp", 80}, "none"}, // ClusterIPs not forwarded
		{"options", tracePacket{lanClient, "203.0.113.10", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080(masq)"},
	} {
		t.Run(fmt.Sprintf("%s %s>%s:%s/%d", c.scenario, c.p.src, c.p.dst, c.p.proto, c.p.port), func(t *testing.T) {
			fake, _ := applyFake(t, scenarios[c.scenario]())
			tr := &tracer{t: t, table: fake.Table}
			if got := tr.trace(c.p); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

// TestTraceAffinity: a client recorded in an endpoint's set goes to that endpoint only, from
// every frontend of the Service port; other clients still get the random pick.
func TestTraceAffinity(t *testing.T) {
	fake, _ := applyFake(t, scenarios["affinity"]())
	var set string
	for name := range fake.Table.Sets {
		if strings.Contains(name, "default/sticky/") && strings.HasSuffix(name, "__198.18.3.2/8080") {
			set = name
		}
	}
	tx := fake.NewTransaction()
	tx.Add(&knftables.Element{Set: set, Key: []string{"198.51.100.10"}})
	if err := fake.Run(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
	tr := &tracer{t: t, table: fake.Table}
	for _, c := range []struct {
		p    tracePacket
		want string
	}{
		{tracePacket{"198.51.100.10", "203.0.113.16", "tcp", 80}, "dnat 198.18.3.2:8080(masq)"},
		{tracePacket{"198.51.100.10", "198.51.100.1", "tcp", 30086}, "dnat 198.18.3.2:8080(masq)"},
		{tracePacket{"198.51.100.10", "198.18.0.16", "tcp", 80}, "dnat 198.18.3.2:8080"},
		{tracePacket{"198.51.100.11", "203.0.113.16", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080(masq)"},
		{tracePacket{"198.51.100.10", "198.18.0.17", "tcp", 80}, "dnat 198.18.1.2:8080 198.18.3.2:8080"},
	} {
		if got := tr.trace(c.p); got != c.want {
			t.Errorf("%+v: got %s, want %s", c.p, got, c.want)
		}
	}
}
