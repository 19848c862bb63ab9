package plugin

import (
	"os"
	"strings"
	"testing"
)

func convertText(t *testing.T, in string) (string, []string, error) {
	t.Helper()
	var m MetalLB
	if err := DecodeMetalLB(strings.NewReader(in), &m); err != nil {
		return "", nil, err
	}
	mig, err := ConvertMetalLB(&m, "ironlb-system")
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	if err := WriteYAML(&b, mig.Objects); err != nil {
		t.Fatal(err)
	}
	return b.String(), mig.Warnings, nil
}

func TestConvertMetalLBSamples(t *testing.T) {
	in, err := os.ReadFile("testdata/metallb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := convertText(t, string(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `---
apiVersion: ironlb.io/v1alpha1
kind: IPPool
metadata:
  name: expensive
spec:
  addresses:
  - 203.0.113.8/29
  autoAssign: false
  avoidBuggyIPs: true
---
apiVersion: ironlb.io/v1alpha1
kind: IPPool
metadata:
  labels:
    tier: public
  name: production
spec:
  addresses:
  - 198.51.100.32/28
  - 198.51.100.60-198.51.100.63
  - 2001:db8:5::/124
---
apiVersion: ironlb.io/v1alpha1
kind: IPPool
metadata:
  name: team-a
spec:
  addresses:
  - 203.0.113.64/28
  allocation:
    namespaces:
    - team-a
    priority: 10
    serviceSelector:
      matchLabels:
        exposed: "true"
---
apiVersion: ironlb.io/v1alpha1
kind: L2Advertisement
metadata:
  name: everything
spec: {}
---
apiVersion: ironlb.io/v1alpha1
kind: L2Advertisement
metadata:
  name: office
spec:
  interfaces:
  - eth0
  ipPools:
  - production
  nodeSelectors:
  - matchLabels:
      kubernetes.io/os: linux
---
apiVersion: v1
kind: Secret
metadata:
  name: router-bgp-password
  namespace: ironlb-system
stringData:
  password: s3cret
---
apiVersion: ironlb.io/v1alpha1
kind: BGPPeer
metadata:
  name: router
spec:
  ebgpMultiHop: 255
  holdTime: 1m30s
  keepaliveTime: 30s
  myASN: 64500
  passwordSecretRef:
    key: password
    name: router-bgp-password
    namespace: ironlb-system
  peerASN: 64496
  peerAddress: 192.0.2.1
---
apiVersion: ironlb.io/v1alpha1
kind: BGPPeer
metadata:
  name: spine
spec:
  myASN: 64500
  nodeSelectors:
  - matchLabels:
      rack: r1
  peerASN: 64500
  peerAddress: 2001:db8:1::1
---
apiVersion: ironlb.io/v1alpha1
kind: BGPAdvertisement
metadata:
  name: upstream
spec:
  communities:
  - 65535:65282
  - "64500:1"
  - large:64500:1:2
  ipPoolSelectors:
  - matchLabels:
      tier: public
  localPref: 100
  peers:
  - router
`
	if out != want {
		t.Errorf("converted:\n%s\nwant:\n%s", out, want)
	}
	wantWarnings := []string{
		"BFDProfile metallb-system/fast: no ironlb equivalent; not converted",
		`IPAddressPool metallb-system/production: spec.addresses[1] "198.51.100.60 - 198.51.100.63" written as "198.51.100.60-198.51.100.63" (spaces removed)`,
		"BGPPeer metallb-system/router: ebgpMultiHop true written as ebgpMultiHop: 255",
		"BGPPeer metallb-system/router: the plain-text password moved into Secret ironlb-system/router-bgp-password",
		"BGPPeer metallb-system/router: bfdProfile fast (BFD) has no ironlb equivalent; dropped",
	}
	all := strings.Join(warnings, "\n")
	for _, w := range wantWarnings {
		if !strings.Contains(all, w) {
			t.Errorf("warnings lack %q:\n%s", w, all)
		}
	}
	if len(warnings) != len(wantWarnings) {
		t.Errorf("%d warnings, want %d:\n%s", len(warnings), len(wantWarnings), all)
	}
}

func TestConvertMetalLBCases(t *testing.T) {
	const head = "apiVersion: metallb.io/v1beta1\nmetadata: {name: p, namespace: metallb-system}\n"
	cases := []struct {
		name, in string
		want     []string // substrings of the YAML
		warn     []string // substrings of the warnings
		err      string
	}{{
		name: "host bits cleared",
		in:   head + "kind: IPAddressPool\nspec: {addresses: [198.51.100.7/24]}",
		want: []string{"- 198.51.100.0/24"},
		warn: []string{"host bits cleared"},
	}, {
		name: "bad address",
		in:   head + "kind: IPAddressPool\nspec: {addresses: [198.51.100.300/24]}",
		err:  `IPAddressPool metallb-system/p: spec.addresses[0] "198.51.100.300/24": neither a CIDR nor a range`,
	}, {
		name: "range ending before it starts",
		in:   head + "kind: IPAddressPool\nspec: {addresses: [198.51.100.9-198.51.100.1]}",
		err:  "IPAddressPool metallb-system/p: spec.addresses:",
	}, {
		name: "several namespace selectors",
		in: head + "kind: IPAddressPool\nspec: {addresses: [198.51.100.0/30], serviceAllocation: {namespaceSelectors: " +
			"[{matchLabels: {a: b}}, {matchLabels: {c: d}}]}}",
		want: []string{"namespaceSelector:\n      matchLabels:\n        a: b"},
		warn: []string{"serviceAllocation.namespaceSelectors has 2 selectors", "only the first (a=b) is kept"},
	}, {
		name: "priority alone",
		in:   head + "kind: IPAddressPool\nspec: {addresses: [198.51.100.0/30], serviceAllocation: {priority: 3}}",
		warn: []string{"serviceAllocation.priority 3 without namespaces or selectors"},
	}, {
		name: "empty selector means all",
		in:   head + "kind: L2Advertisement\nspec: {ipAddressPools: [a], ipAddressPoolSelectors: [{}], nodeSelectors: [{}, {matchLabels: {x: z}}]}",
		want: []string{"spec: {}"},
		warn: []string{"nodeSelectors holds an empty selector"},
	}, {
		name: "unknown community alias",
		in:   head + "kind: BGPAdvertisement\nspec: {communities: [nope, '1:2']}",
		want: []string{`- "1:2"`},
		warn: []string{`community "nope" is neither`},
	}, {
		name: "unnumbered peer",
		in:   "apiVersion: metallb.io/v1beta2\nmetadata: {name: p}\nkind: BGPPeer\nspec: {myASN: 1, peerASN: 2, interface: eth1}",
		warn: []string{`peering by interface ("eth1", BGP unnumbered) has no ironlb equivalent`},
	}, {
		name: "dynamic ASN",
		in:   "apiVersion: metallb.io/v1beta2\nmetadata: {name: p}\nkind: BGPPeer\nspec: {myASN: 1, dynamicASN: external, peerAddress: 192.0.2.1}",
		warn: []string{`dynamicASN "external" has no ironlb equivalent`},
	}, {
		name: "password secret elsewhere",
		in: "apiVersion: metallb.io/v1beta2\nmetadata: {name: p, namespace: metallb-system}\nkind: BGPPeer\n" +
			"spec: {myASN: 1, peerASN: 1, peerAddress: 192.0.2.1, ebgpMultiHop: true, enableGracefulRestart: true, passwordSecret: {name: pw}}",
		want: []string{"name: pw\n    namespace: ironlb-system", "gracefulRestart:\n    enabled: true"},
		warn: []string{"passwordSecret metallb-system/pw must be copied to namespace ironlb-system", "ebgpMultiHop on an iBGP session"},
	}, {
		name: "hold time 0s",
		in:   "apiVersion: metallb.io/v1beta2\nmetadata: {name: p}\nkind: BGPPeer\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 0s}",
		want: []string{"holdTime: 0s"},
		warn: []string{"holdTime 0s (no hold timer) is not supported"},
	}, {
		name: "one name in two namespaces",
		in:   head + "kind: IPAddressPool\nspec: {addresses: [198.51.100.0/30]}\n---\napiVersion: metallb.io/v1beta1\nmetadata: {name: p, namespace: other}\nkind: IPAddressPool\nspec: {addresses: [198.51.100.4/30]}",
		err:  "IPPool other/p and metallb-system/p: ironlb's IPPools are cluster-scoped",
	}, {
		name: "kubectl list",
		in:   "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(head+"kind: IPAddressPool\nspec: {addresses: [198.51.100.0/30]}", "\n", "\n  "),
		want: []string{"name: p\nspec:\n  addresses:\n  - 198.51.100.0/30"},
	}, {
		name: "not YAML",
		in:   "kind: [",
		err:  "document 1:",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, warnings, err := convertText(t, tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			all := strings.Join(warnings, "\n")
			for _, w := range tc.warn {
				if !strings.Contains(all, w) {
					t.Errorf("warnings lack %q:\n%s", w, all)
				}
			}
			if len(tc.warn) == 0 && len(warnings) > 0 {
				t.Errorf("unexpected warnings:\n%s", all)
			}
		})
	}
}
