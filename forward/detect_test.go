package forward

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDetectInNamespace builds stand-ins for kube-proxy's rules in a namespace and runs
// Detect there: nothing, ironlb's own table, kube-proxy's nftables tables, and the chain its
// iptables mode creates through iptables-nft.
func TestDetectInNamespace(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup string // nft commands run in the namespace first
		want  Detection
	}{
		{"nothing", "", Detection{}},
		{"ironlb's own table and unrelated ones", "add table inet ironlb ; add table ip nat ; add chain ip nat POSTROUTING ; add table ip6 filter",
			Detection{}},
		{"kube-proxy nftables mode", "add table ip kube-proxy ; add table ip6 kube-proxy",
			Detection{KubeProxy: true, Found: []string{"nftables table ip kube-proxy", "nftables table ip6 kube-proxy"}}},
		{"kube-proxy iptables mode via iptables-nft", "add table ip nat ; add chain ip nat KUBE-SERVICES ; add table ip filter ; add chain ip filter KUBE-SERVICES",
			Detection{KubeProxy: true, Found: []string{"iptables-nft chain KUBE-SERVICES in table ip filter", "iptables-nft chain KUBE-SERVICES in table ip nat"}}},
		{"a KUBE-SERVICES chain elsewhere does not count", "add table inet mine ; add chain inet mine KUBE-SERVICES", Detection{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := newNamespace(t, "detect")
			if c.setup != "" {
				nftIn(t, ns, c.setup)
			}
			var got Detection
			var err error
			inNamespace(t, ns, func() { got, err = Detect(context.Background()) })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Detect (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDetectParsing(t *testing.T) {
	const tables = `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
		{"table": {"family": "ip", "name": "kube-proxy", "handle": 1}}, {"table": {"family": "inet", "name": "kube-proxy", "handle": 2}}]}`
	const chains = `{"nftables": [{"metainfo": {"json_schema_version": 1}},
		{"chain": {"family": "ip6", "table": "nat", "name": "KUBE-SERVICES", "handle": 3}}]}`
	got, err := detectIn([]byte(tables), []byte(chains))
	if err != nil {
		t.Fatal(err)
	}
	want := Detection{KubeProxy: true, Found: []string{"iptables-nft chain KUBE-SERVICES in table ip6 nat", "nftables table ip kube-proxy"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("detectIn (-want +got):\n%s", diff)
	}
	if s := got.String(); s != "kube-proxy rules present: iptables-nft chain KUBE-SERVICES in table ip6 nat, nftables table ip kube-proxy" {
		t.Errorf("String() = %q", s)
	}
	for _, bad := range []string{"", "{}", `{"nftables": [{"table": "x"}]}`} {
		if _, err := detectIn([]byte(bad), []byte(chains)); err == nil {
			t.Errorf("detectIn(%q) succeeded, want an error", bad)
		}
	}
}
