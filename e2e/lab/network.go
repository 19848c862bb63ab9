package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"
)

// buildNetwork creates the namespaces, the LAN and management bridges, the nodes' links and
// routes, the router's external link and the clients. Pods come later (AddPod).
func (l *Lab) buildNetwork(ctx context.Context) error {
	names := []string{NSCtl, NSLAN, NSRouter, NSExtClient, NSLANClient}
	if l.Config.FRR {
		names = append(names, NSFRR)
	}
	for i := 1; i <= l.Config.Nodes; i++ {
		n := &Node{
			Index: i, Name: fmt.Sprintf("node%d", i), NetNS: fmt.Sprintf("%snode%d", Prefix, i), LANIf: "eth0",
			LAN4: nodeLAN4(i), LAN6: nodeLAN6(i), Mgmt: nodeMgmt(i), Pod4: podCIDR4(i), Pod6: podCIDR6(i),
			ASN: NodeASN, labDir: l.Config.Dir,
		}
		l.Nodes = append(l.Nodes, n)
		names = append(names, n.NetNS)
	}
	for _, ns := range names {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", ns).CombinedOutput(); err != nil {
			return fmt.Errorf("lab: creating netns %s: %w: %s", ns, err, out)
		}
	}

	// Switches: the LAN bridge has no address; the management bridge carries the API server's.
	if err := IPBatch(ctx, NSLAN,
		"link set lo up",
		"link add lan type bridge forward_delay 0 mcast_snooping 0",
		"link set lan up",
	); err != nil {
		return err
	}
	if err := IPBatch(ctx, NSCtl,
		"link set lo up",
		"link add mgmt type bridge forward_delay 0",
		fmt.Sprintf("addr add %s/%d dev mgmt", APIServerAddr, mgmtPrefixBits),
		"link set mgmt up",
	); err != nil {
		return err
	}

	// Everything on the LAN: one veth each, the bridge end named after the member.
	type member struct {
		ns, port   string
		v4, v6     string
		extraLines []string
	}
	members := []member{
		{NSRouter, "router", RouterLAN4.String(), RouterLAN6.String(), []string{
			fmt.Sprintf("addr add %s/%d dev eth1", RouterExt4, extPrefixBits),
			fmt.Sprintf("addr add %s/64 dev eth1 nodad", RouterExt6),
			"link set eth1 up",
		}},
		{NSLANClient, "client", ClientLAN4.String(), ClientLAN6.String(), nil},
	}
	if l.Config.FRR {
		members = append(members, member{NSFRR, "frr", FRRLAN4.String(), FRRLAN6.String(), nil})
	}
	for _, n := range l.Nodes {
		lines := []string{
			fmt.Sprintf("addr add %s/%d dev mgmt0", n.Mgmt, mgmtPrefixBits),
			"link set mgmt0 up",
			// A fixed MAC: a bridge with none takes the lowest of its ports', so a new pod's veth
			// could change it and the pods' gateway entries would point at a MAC that is gone
			// (replies lost until they ARP again: a SYN sent again a second later).
			fmt.Sprintf("link add cni0 address 02:19:00:00:%02x:01 type bridge forward_delay 0", n.Index),
			fmt.Sprintf("addr add %s/%d dev cni0", gateway(n.Pod4), n.Pod4.Bits()),
			fmt.Sprintf("addr add %s/%d dev cni0 nodad", gateway(n.Pod6), n.Pod6.Bits()),
			"link set cni0 up",
		}
		lines = append(lines, l.lanRoutes(n)...)
		members = append(members, member{n.NetNS, fmt.Sprintf("n%d", n.Index), n.LAN4.String(), n.LAN6.String(), lines})
		// The management link: node end mgmt0, bridge end m<i> in the control namespace. The
		// control namespace reaches the node's pods (pods talk to the API server) and its LAN
		// address (the API server talks to its kubelet) through it.
		if err := IPBatch(ctx, NSCtl,
			fmt.Sprintf("link add m%d type veth peer name mgmt0 netns %s", n.Index, n.NetNS),
			fmt.Sprintf("link set m%d master mgmt", n.Index),
			fmt.Sprintf("link set m%d up", n.Index),
			fmt.Sprintf("route add %s via %s", n.Pod4, n.Mgmt),
			fmt.Sprintf("route add %s/32 via %s", n.LAN4, n.Mgmt),
		); err != nil {
			return err
		}
	}
	// The external link exists before the router and the external client configure their ends.
	if err := IPBatch(ctx, NSRouter, "link add eth1 type veth peer name eth0 netns "+NSExtClient); err != nil {
		return err
	}
	var lanLines []string
	for _, m := range members {
		lanLines = append(lanLines,
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", m.port, m.ns),
			fmt.Sprintf("link set %s master lan", m.port),
			fmt.Sprintf("link set %s up", m.port))
	}
	if err := IPBatch(ctx, NSLAN, lanLines...); err != nil {
		return err
	}
	var g errgroup.Group
	for _, m := range members {
		g.Go(func() error {
			if err := setSysctls(m.ns, routerSysctls); err != nil {
				return err
			}
			lines := append([]string{
				"link set lo up",
				fmt.Sprintf("addr add %s/24 dev eth0", m.v4),
				fmt.Sprintf("addr add %s/64 dev eth0 nodad", m.v6),
				"link set eth0 up",
			}, m.extraLines...)
			return IPBatch(ctx, m.ns, lines...)
		})
	}
	g.Go(func() error {
		return IPBatch(ctx, NSExtClient,
			"link set lo up",
			fmt.Sprintf("addr add %s/%d dev eth0", ExtClient4, extPrefixBits),
			fmt.Sprintf("addr add %s/64 dev eth0 nodad", ExtClient6),
			"link set eth0 up",
			"route add default via "+RouterExt4.String(),
			"route add default via "+RouterExt6.String())
	})
	if err := g.Wait(); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		mac, err := linkMAC(n.NetNS, n.LANIf)
		if err != nil {
			return err
		}
		n.MAC = mac
	}
	return nil
}

// routerSysctls are set in every LAN member: forwarding for nodes and routers, and IPv6 without
// duplicate address detection delays.
var routerSysctls = map[string]string{
	"net/ipv4/ip_forward":                 "1",
	"net/ipv6/conf/all/forwarding":        "1",
	"net/ipv6/conf/default/accept_dad":    "0",
	"net/ipv6/conf/all/accept_dad":        "0",
	"net/ipv4/conf/all/rp_filter":         "0",
	"net/ipv4/conf/default/rp_filter":     "0",
	"net/ipv6/conf/all/keep_addr_on_down": "1",
	// No ICMP redirects: they share the per-destination ICMP rate limit with the port
	// unreachables that refuse connections to Services without endpoints.
	"net/ipv4/conf/all/send_redirects":     "0",
	"net/ipv4/conf/default/send_redirects": "0",
}

func setSysctls(ns string, kv map[string]string) error {
	return InNetNS(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", strings.ReplaceAll(k, "/", "."), v, ns, err)
			}
		}
		return nil
	})
}

func linkMAC(ns, ifname string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := InNetNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lab: reading MAC of %s in %s: %w", ifname, ns, err)
	}
	return mac, nil
}

// gateway is the first address of p: the node's address on its pod bridge.
func gateway(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// lanRoutes are a node's routes through its LAN link: the default route and the other nodes'
// pod subnets. The kernel drops them when the link goes down.
func (l *Lab) lanRoutes(n *Node) []string {
	lines := []string{
		"route replace default via " + RouterLAN4.String(),
		"route replace default via " + RouterLAN6.String(),
	}
	for _, o := range l.Nodes {
		if o != n {
			lines = append(lines,
				fmt.Sprintf("route replace %s via %s", o.Pod4, o.LAN4),
				fmt.Sprintf("route replace %s via %s", o.Pod6, o.LAN6))
		}
	}
	return lines
}

// LinkUp sets n's LAN link up again after a test set it down, with what the kernel dropped
// with it: the IPv6 address (keep_addr_on_down is 0) and the routes through the link.
func (l *Lab) LinkUp(ctx context.Context, n *Node) error {
	return IPBatch(ctx, n.NetNS, append([]string{
		"link set " + n.LANIf + " up",
		fmt.Sprintf("addr replace %s/64 dev %s nodad", n.LAN6, n.LANIf),
	}, l.lanRoutes(n)...)...)
}
