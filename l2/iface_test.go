package l2

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// node is a typical node: a physical NIC on the LAN, a second physical NIC on another
// subnet, one that is down, a bridge with a LAN-side IPv6 subnet and a physical port, a
// VLAN, veths and lo.
var node = []Interface{
	{Name: "lo", Prefixes: pfx("127.0.0.1/8", "::1/128"), Up: true, Loopback: true, Virtual: true},
	{Name: "eth0", Prefixes: pfx("198.51.100.10/24", "fe80::1/64"), Up: true},
	{Name: "eth1", Prefixes: pfx("192.0.2.10/25"), Up: true},
	{Name: "eth2", Up: false},
	{Name: "br0", Prefixes: pfx("2001:db8:100::10/64"), Up: true, Virtual: true},
	{Name: "eno1", Up: true, Master: "br0"},
	{Name: "eth0.100", Prefixes: pfx("203.0.113.10/24"), Up: true, Virtual: true},
	{Name: "veth1234", Up: true, Virtual: true},
	{Name: "vethdown", Up: false, Virtual: true},
}

func TestChooseInterfaces(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ip          string
		patterns    []string
		ifaces      []Interface
		wantChosen  []string
		wantMissing []string
	}{
		{name: "default: the interface whose subnet contains the IPv4 address",
			ip: "198.51.100.200", ifaces: node, wantChosen: []string{"eth0"}},
		{name: "default: the interface whose subnet contains the IPv6 address, virtual or not",
			ip: "2001:db8:100::200", ifaces: node, wantChosen: []string{"br0"}},
		{name: "default: a VLAN interface's subnet",
			ip: "203.0.113.99", ifaces: node, wantChosen: []string{"eth0.100"}},
		{name: "default: no subnet contains the IP, so every up non-virtual interface",
			ip: "198.18.0.1", ifaces: node, wantChosen: []string{"eth0", "eth1"}},
		{name: "default: a link-local subnet does not contain a global address",
			ip: "2001:db8:999::1", ifaces: node, wantChosen: []string{"eth0", "eth1"}},
		{name: "default: every interface with a containing subnet",
			ip: "198.51.100.200",
			ifaces: []Interface{
				{Name: "a", Prefixes: pfx("198.51.100.1/24"), Up: true},
				{Name: "b", Prefixes: pfx("198.51.100.129/25"), Up: true},
				{Name: "c", Prefixes: pfx("198.51.100.2/24"), Up: true, Virtual: true},
			},
			wantChosen: []string{"a", "b", "c"}},
		{name: "default: a bridge or bond port is skipped, even with a containing subnet",
			ip: "198.51.100.200",
			ifaces: []Interface{
				{Name: "bond0", Prefixes: pfx("198.51.100.1/24"), Up: true, Virtual: true},
				{Name: "eth0", Prefixes: pfx("198.51.100.2/24"), Up: true, Master: "bond0"},
				{Name: "eth1", Up: true, Master: "bond0"},
			},
			wantChosen: []string{"bond0"}},
		{name: "default: a port is not a fallback either",
			ip: "203.0.113.1",
			ifaces: []Interface{
				{Name: "bond0", Up: true, Virtual: true},
				{Name: "eth0", Up: true, Master: "bond0"},
			}},
		{name: "a port named in a pattern is chosen",
			ip: "198.51.100.200", patterns: []string{"eno1"}, ifaces: node, wantChosen: []string{"eno1"}},
		{name: "default: a down interface's subnet does not count",
			ip: "198.51.100.200",
			ifaces: []Interface{
				{Name: "down", Prefixes: pfx("198.51.100.1/24")},
				{Name: "up", Up: true},
			},
			wantChosen: []string{"up"}},
		{name: "default: never loopback, even when its subnet contains the IP",
			ip: "127.0.0.5", ifaces: node, wantChosen: []string{"eth0", "eth1"}},
		{name: "default: only virtual and loopback interfaces give nothing",
			ip: "198.18.0.1",
			ifaces: []Interface{
				{Name: "lo", Up: true, Loopback: true, Virtual: true},
				{Name: "br0", Up: true, Virtual: true},
			}},
		{name: "default: no interfaces at all", ip: "198.51.100.200"},
		{name: "a literal name",
			ip: "198.51.100.200", patterns: []string{"eth1"}, ifaces: node, wantChosen: []string{"eth1"}},
		{name: "a literal name that is down is still chosen",
			ip: "198.51.100.200", patterns: []string{"eth2"}, ifaces: node, wantChosen: []string{"eth2"}},
		{name: "a literal name the node lacks is missing",
			ip: "198.51.100.200", patterns: []string{"eth0", "bond0"}, ifaces: node,
			wantChosen: []string{"eth0"}, wantMissing: []string{"bond0"}},
		{name: "only missing names: nothing chosen, no fallback to the default",
			ip: "198.51.100.200", patterns: []string{"bond0", "bond1"}, ifaces: node,
			wantMissing: []string{"bond0", "bond1"}},
		{name: "a glob",
			ip: "198.51.100.200", patterns: []string{"eth*"}, ifaces: node,
			wantChosen: []string{"eth0", "eth0.100", "eth1", "eth2"}},
		{name: "a character class",
			ip: "198.51.100.200", patterns: []string{"eth[01]"}, ifaces: node,
			wantChosen: []string{"eth0", "eth1"}},
		{name: "a glob that matches nothing is not missing",
			ip: "198.51.100.200", patterns: []string{"enp*"}, ifaces: node},
		{name: "a malformed glob is missing",
			ip: "198.51.100.200", patterns: []string{"eth[", "eth1"}, ifaces: node,
			wantChosen: []string{"eth1"}, wantMissing: []string{"eth["}},
		{name: "overlapping patterns choose each interface once, sorted",
			ip: "198.51.100.200", patterns: []string{"veth*", "eth1", "*1*", "eth1"}, ifaces: node,
			wantChosen: []string{"eno1", "eth0.100", "eth1", "veth1234", "vethdown"}},
		{name: "loopback is never chosen, by name or by glob, nor missing",
			ip: "198.51.100.200", patterns: []string{"lo", "*"}, ifaces: node,
			wantChosen: []string{"br0", "eno1", "eth0", "eth0.100", "eth1", "eth2", "veth1234", "vethdown"}},
		{name: "patterns ignore subnets",
			ip: "2001:db8:100::200", patterns: []string{"eth1"}, ifaces: node, wantChosen: []string{"eth1"}},
		{name: "missing keeps the patterns' order and duplicates",
			ip: "198.51.100.200", patterns: []string{"z", "a", "z"}, ifaces: node,
			wantMissing: []string{"z", "a", "z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chosen, missing := ChooseInterfaces(netip.MustParseAddr(tc.ip), tc.patterns, tc.ifaces)
			if diff := cmp.Diff(tc.wantChosen, chosen); diff != "" {
				t.Errorf("chosen (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMissing, missing); diff != "" {
				t.Errorf("missing (-want +got):\n%s", diff)
			}
		})
	}
}

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func TestReadInterfaces(t *testing.T) {
	n := newTestNet(t)
	a, b := n.ns("a"), n.ns("b")
	n.veth(a, "eth0", b, "eth0")
	n.addr(a, "eth0", "198.51.100.10/24", "2001:db8:100::10/64")
	n.must("", "ip", "-n", a, "link", "add", "br9", "type", "bridge")
	// sysfs shows the namespace that mounted it, so the test makes up the one the reader
	// looks at: eth0 has a device behind it, br9 (down) and lo do not; eth0 is a port of
	// br9.
	sys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sys, "eth0", "device"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/virtual/net/br9", filepath.Join(sys, "eth0", "master")); err != nil {
		t.Fatal(err)
	}
	var got []Interface
	if err := inNetNS(a, func() error {
		var err error
		got, err = readInterfaces(sys)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		// Drop the kernel's link-local address, whose value is random.
		got[i].Prefixes = slices.DeleteFunc(got[i].Prefixes, func(p netip.Prefix) bool { return p.Addr().IsLinkLocalUnicast() })
	}
	br9, eth0 := n.mac(a, "br9"), n.mac(a, "eth0")
	want := []Interface{
		{Name: "br9", Virtual: true, MAC: br9[:]},
		{Name: "eth0", Prefixes: pfx("198.51.100.10/24", "2001:db8:100::10/64"), Up: true, Master: "br9", MAC: eth0[:]},
		{Name: "lo", Prefixes: pfx("127.0.0.1/8", "::1/128"), Up: true, Loopback: true, Virtual: true},
	}
	if diff := cmp.Diff(want, got, cmpOpts, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("interfaces (-want +got):\n%s", diff)
	}
	chosen, _ := ChooseInterfaces(netip.MustParseAddr("198.51.100.200"), []string{"eth*"}, got)
	if !slices.Equal(chosen, []string{"eth0"}) {
		t.Errorf("ChooseInterfaces over the read interfaces = %v, want [eth0]", chosen)
	}
}

func TestInterfacesOfThisHost(t *testing.T) {
	got, err := Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(got, func(ifi Interface) bool { return ifi.Loopback })
	if i < 0 || !got[i].Virtual || !got[i].Up {
		t.Errorf("no up, virtual loopback interface among %+v", got)
	}
}
