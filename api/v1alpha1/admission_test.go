package v1alpha1_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/ironlb/ironlb/api/v1alpha1"
)

// cause is one expected entry of a refusal: the field path the API server names and a part of
// its message.
type cause struct {
	field, msg string
}

type admissionCase struct {
	name string
	kind string
	// body is the object without apiVersion, kind and metadata, as YAML.
	body string
	// want is every cause the API server must report; nil means the object is accepted.
	want []cause
}

// TestAdmission creates each object (server-side dry run) and checks that the API server
// accepts it, or refuses it with exactly the expected causes, each naming its field. Every
// admission rule in the CRDs has at least one accepted and one refused case here.
func TestAdmission(t *testing.T) {
	client := dynamicClient(t)
	var cases []admissionCase
	cases = append(cases, ipPoolCases...)
	cases = append(cases, l2AdvertisementCases...)
	cases = append(cases, bgpPeerCases...)
	cases = append(cases, bgpAdvertisementCases...)
	cases = append(cases, serviceAnnouncementCases...)
	cases = append(cases, bgpSessionStateCases...)
	for _, tc := range cases {
		t.Run(tc.kind+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			obj := newObject(t, tc.kind, "test", tc.body)
			created, err := create(t, client, obj, true)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused, want accepted: %v", err)
				}
				decodeStrict(t, created)
				return
			}
			if err == nil {
				t.Fatalf("accepted, want refused with %v", tc.want)
			}
			checkCauses(t, err, tc.want)
		})
	}
}

var resources = map[string]struct {
	resource   string
	namespaced bool
	newObject  func() any
}{
	"IPPool":              {"ippools", false, func() any { return &v1alpha1.IPPool{} }},
	"L2Advertisement":     {"l2advertisements", false, func() any { return &v1alpha1.L2Advertisement{} }},
	"BGPPeer":             {"bgppeers", false, func() any { return &v1alpha1.BGPPeer{} }},
	"BGPAdvertisement":    {"bgpadvertisements", false, func() any { return &v1alpha1.BGPAdvertisement{} }},
	"ServiceAnnouncement": {"serviceannouncements", true, func() any { return &v1alpha1.ServiceAnnouncement{} }},
	"BGPSessionState":     {"bgpsessionstates", false, func() any { return &v1alpha1.BGPSessionState{} }},
}

// testNamespace holds the namespaced test objects; the API server creates it on start.
const testNamespace = "default"

func dynamicClient(t *testing.T) dynamic.Interface {
	t.Helper()
	client, err := dynamic.NewForConfig(cluster(t))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func newObject(t *testing.T, kind, name, body string) *unstructured.Unstructured {
	t.Helper()
	res, ok := resources[kind]
	if !ok {
		t.Fatalf("unknown kind %q", kind)
	}
	raw, err := yaml.YAMLToJSON([]byte(body))
	if err != nil {
		t.Fatalf("test object is not YAML: %v\n%s", err, body)
	}
	fields := map[string]any{}
	if body != "" {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // keep 4294967296 an integer
		if err := dec.Decode(&fields); err != nil {
			t.Fatalf("test object is not a YAML mapping: %v\n%s", err, body)
		}
	}
	obj := &unstructured.Unstructured{Object: fields}
	obj.SetAPIVersion(v1alpha1.SchemeGroupVersion.String())
	obj.SetKind(kind)
	obj.SetName(name)
	if res.namespaced {
		obj.SetNamespace(testNamespace)
	}
	return obj
}

func resourceClient(client dynamic.Interface, obj *unstructured.Unstructured) dynamic.ResourceInterface {
	res := resources[obj.GetKind()]
	gvr := schema.GroupVersionResource{Group: v1alpha1.GroupName, Version: "v1alpha1", Resource: res.resource}
	if res.namespaced {
		return client.Resource(gvr).Namespace(obj.GetNamespace())
	}
	return client.Resource(gvr)
}

func create(t *testing.T, client dynamic.Interface, obj *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	t.Helper()
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return resourceClient(client, obj).Create(context.Background(), obj, opts)
}

// decodeStrict decodes an object the API server returned into its Go type, refusing fields
// the type does not have: the CRD schema and the Go types must agree.
func decodeStrict(t *testing.T, obj *unstructured.Unstructured) any {
	t.Helper()
	raw, err := obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	typed := resources[obj.GetKind()].newObject()
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(typed); err != nil {
		t.Fatalf("the stored object does not decode into its Go type: %v\n%s", err, raw)
	}
	return typed
}

// checkCauses requires err to be an Invalid refusal whose causes are exactly want: each on
// the expected field, with the expected text in its message.
func checkCauses(t *testing.T, err error, want []cause) {
	t.Helper()
	var status apierrors.APIStatus
	if !errors.As(err, &status) || !apierrors.IsInvalid(err) {
		t.Fatalf("refused with %v, want an Invalid error", err)
	}
	var got []metav1.StatusCause
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			// Added whenever a required, too long, too many or unsupported value stops the
			// CEL rules from running; it names no field and is not what the case is about.
			if strings.Contains(c.Message, "some validation rules were not checked") {
				continue
			}
			got = append(got, c)
		}
	}
	matched := make([]bool, len(got))
	for _, w := range want {
		i := slices.IndexFunc(got, func(c metav1.StatusCause) bool {
			return c.Field == w.field && strings.Contains(c.Message, w.msg)
		})
		if i < 0 {
			t.Errorf("missing cause %s: ...%s...", w.field, w.msg)
			continue
		}
		matched[i] = true
	}
	for i, c := range got {
		if !matched[i] {
			t.Errorf("unexpected cause %s: %s", c.Field, c.Message)
		}
	}
	if t.Failed() {
		t.Logf("full error: %v", err)
	}
}

func many(n int, format string) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(format, i)
	}
	return "[" + strings.Join(items, ", ") + "]"
}

var ipPoolCases = []admissionCase{
	// Accepted.
	{name: "IPv4 and IPv6 CIDRs and ranges", kind: "IPPool",
		body: `spec: {addresses: [198.51.100.0/24, 203.0.113.10-203.0.113.20, "2001:db8::/64", "2001:db8:1::10-2001:db8:1::1f"]}`},
	{name: "single addresses as /32 and /128", kind: "IPPool",
		body: `spec: {addresses: [198.51.100.7/32, "2001:db8::7/128"]}`},
	{name: "range of one address", kind: "IPPool",
		body: `spec: {addresses: [198.51.100.7-198.51.100.7, "2001:db8::7-2001:db8::7"]}`},
	{name: "IPv6 range spelled non-canonically", kind: "IPPool",
		body: `spec: {addresses: ["2001:DB8:0:0::10-2001:0db8::1F"]}`},
	{name: "IPv6 range whose ends differ in the last bit", kind: "IPPool",
		body: `spec: {addresses: ["2001:db8::fffe-2001:db8::ffff"]}`},
	{name: "IPv4 range whose ends differ in the first bit", kind: "IPPool",
		body: `spec: {addresses: [127.255.255.255-128.0.0.0]}`},
	{name: "64 addresses, the most allowed", kind: "IPPool",
		body: `spec: {addresses: ` + many(64, "198.51.100.%d/32") + `}`},
	{name: "autoAssign false and avoidBuggyIPs", kind: "IPPool",
		body: `spec: {addresses: [198.51.100.0/24], autoAssign: false, avoidBuggyIPs: true}`},
	{name: "restricted by namespaces and serviceSelector, with priority", kind: "IPPool",
		body: `spec: {addresses: [198.51.100.0/24], allocation: {priority: 10, namespaces: [web, team-a], serviceSelector: {matchLabels: {tier: edge}}}}`},
	{name: "restricted by a namespaceSelector with matchExpressions only", kind: "IPPool",
		body: `spec: {addresses: [198.51.100.0/24], allocation: {priority: 1, namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}}}`},
	{name: "allocation with priority 0 and no restriction", kind: "IPPool",
		body: `spec: {addresses: [198.51.100.0/24], allocation: {priority: 0}}`},

	// Refused: addresses.
	{name: "no addresses", kind: "IPPool", body: `spec: {}`,
		want: []cause{{"spec.addresses", "Required value"}}},
	{name: "empty addresses", kind: "IPPool", body: `spec: {addresses: []}`,
		want: []cause{{"spec.addresses", "should have at least 1 items"}}},
	{name: "65 addresses", kind: "IPPool", body: `spec: {addresses: ` + many(65, "198.51.100.%d/32") + `}`,
		want: []cause{{"spec.addresses", "must have at most 64 items"}}},
	{name: "duplicate address", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24, 198.51.100.0/24]}`,
		want: []cause{{"spec.addresses[1]", "Duplicate value"}}},
	{name: "address too long", kind: "IPPool", body: `spec: {addresses: ["` + strings.Repeat("1", 80) + `"]}`,
		want: []cause{{"spec.addresses[0]", "Too long"}}},
	{name: "not an address", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24, lan]}`,
		want: []cause{{"spec.addresses[1]", "addresses: lan is neither a CIDR"}}},
	{name: "prefix length out of range", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/33]}`,
		want: []cause{{"spec.addresses[0]", "is neither a CIDR"}}},
	{name: "IPv4 with leading zeros", kind: "IPPool", body: `spec: {addresses: [198.51.100.010/32]}`,
		want: []cause{{"spec.addresses[0]", "is neither a CIDR"}}},
	{name: "IPv4-mapped IPv6", kind: "IPPool", body: `spec: {addresses: ["::ffff:198.51.100.1/128"]}`,
		want: []cause{{"spec.addresses[0]", "is neither a CIDR"}}},
	{name: "range with spaces", kind: "IPPool", body: `spec: {addresses: [198.51.100.1 - 198.51.100.5]}`,
		want: []cause{{"spec.addresses[0]", "is neither a CIDR"}}},
	{name: "range of three addresses", kind: "IPPool", body: `spec: {addresses: [198.51.100.1-198.51.100.2-198.51.100.3]}`,
		want: []cause{{"spec.addresses[0]", "is neither a CIDR"}}},
	{name: "range of CIDRs", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/25-198.51.100.128/25]}`,
		want: []cause{{"spec.addresses[0]", "is neither a CIDR"}}},
	{name: "single IPv4 address", kind: "IPPool", body: `spec: {addresses: [198.51.100.7]}`,
		want: []cause{{"spec.addresses[0]", "addresses: 198.51.100.7 is a single address; write it as a CIDR: 198.51.100.7/32"}}},
	{name: "single IPv6 address", kind: "IPPool", body: `spec: {addresses: ["2001:db8::7"]}`,
		want: []cause{{"spec.addresses[0]", "write it as a CIDR: 2001:db8::7/128"}}},
	{name: "IPv4 CIDR with host bits", kind: "IPPool", body: `spec: {addresses: [198.51.100.7/24]}`,
		want: []cause{{"spec.addresses[0]", "addresses: 198.51.100.7/24 has host bits set"}}},
	{name: "IPv6 CIDR with host bits", kind: "IPPool", body: `spec: {addresses: ["2001:db8::1/64"]}`,
		want: []cause{{"spec.addresses[0]", "has host bits set"}}},
	{name: "range mixing IPv4 and IPv6", kind: "IPPool", body: `spec: {addresses: ["198.51.100.1-2001:db8::1"]}`,
		want: []cause{{"spec.addresses[0]", "mixes IPv4 and IPv6"}}},
	{name: "IPv4 range ending before it starts", kind: "IPPool", body: `spec: {addresses: [198.51.100.20-198.51.100.10]}`,
		want: []cause{{"spec.addresses[0]", "addresses: range 198.51.100.20-198.51.100.10 ends before it starts"}}},
	{name: "IPv4 range reversed in the first bit", kind: "IPPool", body: `spec: {addresses: [128.0.0.0-127.255.255.255]}`,
		want: []cause{{"spec.addresses[0]", "ends before it starts"}}},
	{name: "IPv6 range ending before it starts", kind: "IPPool", body: `spec: {addresses: ["2001:db8::1f-2001:db8::10"]}`,
		want: []cause{{"spec.addresses[0]", "ends before it starts"}}},
	{name: "IPv6 range reversed in the last bit", kind: "IPPool", body: `spec: {addresses: ["2001:db8::1-2001:db8::"]}`,
		want: []cause{{"spec.addresses[0]", "ends before it starts"}}},
	{name: "IPv6 range reversed in the first bit", kind: "IPPool", body: `spec: {addresses: ["8000::-7fff:ffff::"]}`,
		want: []cause{{"spec.addresses[0]", "ends before it starts"}}},

	// Refused: allocation.
	{name: "negative priority", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24], allocation: {priority: -1, namespaces: [web]}}`,
		want: []cause{{"spec.allocation.priority", "should be greater than or equal to 0"}}},
	{name: "priority without a restriction", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24], allocation: {priority: 5}}`,
		want: []cause{{"spec.allocation.priority", "allocation.priority orders restricted pools only"}}},
	{name: "invalid namespace name", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24], allocation: {namespaces: [Web_1]}}`,
		want: []cause{{"spec.allocation.namespaces[0]", "should match"}}},
	{name: "empty namespaces", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24], allocation: {namespaces: []}}`,
		want: []cause{{"spec.allocation.namespaces", "should have at least 1 items"}}},
	{name: "empty namespaceSelector", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24], allocation: {namespaceSelector: {}}}`,
		want: []cause{{"spec.allocation.namespaceSelector", "allocation.namespaceSelector must not be empty"}}},
	{name: "serviceSelector with empty matchLabels", kind: "IPPool", body: `spec: {addresses: [198.51.100.0/24], allocation: {serviceSelector: {matchLabels: {}}}}`,
		want: []cause{{"spec.allocation.serviceSelector", "allocation.serviceSelector must not be empty"}}},
}

var l2AdvertisementCases = []admissionCase{
	{name: "no spec: every pool from every node", kind: "L2Advertisement", body: ``},
	{name: "empty spec", kind: "L2Advertisement", body: `spec: {}`},
	{name: "every field", kind: "L2Advertisement",
		body: `spec: {ipPools: [lan, lan.v6], ipPoolSelectors: [{matchLabels: {l2: "true"}}], nodeSelectors: [{matchExpressions: [{key: node-role, operator: In, values: [edge]}]}], interfaces: [eth0, "enp*s0", "eth[0-3]"]}`},

	{name: "empty ipPools", kind: "L2Advertisement", body: `spec: {ipPools: []}`,
		want: []cause{{"spec.ipPools", "should have at least 1 items"}}},
	{name: "invalid pool name", kind: "L2Advertisement", body: `spec: {ipPools: [Lan_1]}`,
		want: []cause{{"spec.ipPools[0]", "should match"}}},
	{name: "empty ipPoolSelector", kind: "L2Advertisement", body: `spec: {ipPoolSelectors: [{matchLabels: {l2: "true"}}, {}]}`,
		want: []cause{{"spec.ipPoolSelectors[1]", "ipPoolSelectors: an empty selector ({}) matches every pool"}}},
	{name: "nodeSelector with empty matchLabels", kind: "L2Advertisement", body: `spec: {nodeSelectors: [{matchLabels: {}}]}`,
		want: []cause{{"spec.nodeSelectors[0]", "nodeSelectors: an empty selector ({}) matches every node"}}},
	{name: "nodeSelector with empty matchExpressions", kind: "L2Advertisement", body: `spec: {nodeSelectors: [{matchExpressions: []}]}`,
		want: []cause{{"spec.nodeSelectors[0]", "nodeSelectors: an empty selector"}}},
	{name: "interface with a slash", kind: "L2Advertisement", body: `spec: {interfaces: [eth0/1]}`,
		want: []cause{{"spec.interfaces[0]", "should match"}}},
	{name: "empty interface name", kind: "L2Advertisement", body: `spec: {interfaces: [""]}`,
		want: []cause{{"spec.interfaces[0]", "should be at least 1 chars long"}}},
	{name: "duplicate interface", kind: "L2Advertisement", body: `spec: {interfaces: [eth0, eth0]}`,
		want: []cause{{"spec.interfaces[1]", "Duplicate value"}}},
}

// bgpPeer is a valid BGPPeer spec; cases add or override fields.
const bgpPeer = `peerAddress: 198.51.100.1, peerASN: 64512, myASN: 64513`

var bgpPeerCases = []admissionCase{
	{name: "minimal", kind: "BGPPeer", body: `spec: {` + bgpPeer + `}`},
	{name: "every field", kind: "BGPPeer",
		body: `spec: {peerAddress: "2001:db8::1", peerASN: 4294967295, myASN: 1, peerPort: 1179, sourceAddress: "2001:db8::10",
			holdTime: 3s, keepaliveTime: 1s, ebgpMultiHop: 255, passwordSecretRef: {namespace: ironlb-system, name: bgp-auth, key: router.a},
			nodeSelectors: [{matchLabels: {rack: r1}}], routerID: 198.51.100.10, gracefulRestart: {enabled: true, restartTime: 4095s}}`},
	{name: "hold time 0s with keepalive 0s", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 0s, keepaliveTime: 0s}`},
	{name: "durations in minutes", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 1m30s, keepaliveTime: 1m29s}`},
	{name: "hold time 65535s", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 18h12m15s}`},
	{name: "iBGP", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1, peerASN: 64512, myASN: 64512}`},
	{name: "eBGP multihop 1", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, ebgpMultiHop: 1}`},
	{name: "loopback peer on another port", kind: "BGPPeer", body: `spec: {peerAddress: 127.0.0.1, peerPort: 65535, peerASN: 64512, myASN: 64513}`},
	{name: "IPv4 link-local peer", kind: "BGPPeer", body: `spec: {peerAddress: 169.254.1.1, peerASN: 64512, myASN: 64513, sourceAddress: 169.254.1.2}`},
	{name: "graceful restart disabled", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, gracefulRestart: {enabled: false}}`},

	{name: "no peerAddress", kind: "BGPPeer", body: `spec: {peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "Required value"}}},
	{name: "peerAddress with prefix length", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1/32, peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must be an IPv4 or IPv6 address"}}},
	{name: "peerAddress a host name", kind: "BGPPeer", body: `spec: {peerAddress: router.example, peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must be an IPv4 or IPv6 address"}}},
	{name: "peerAddress with a zone", kind: "BGPPeer", body: `spec: {peerAddress: "fe80::1%eth0", peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must be an IPv4 or IPv6 address"}}},
	{name: "peerAddress unspecified", kind: "BGPPeer", body: `spec: {peerAddress: 0.0.0.0, peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must be a unicast address"}}},
	{name: "peerAddress broadcast", kind: "BGPPeer", body: `spec: {peerAddress: 255.255.255.255, peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must be a unicast address"}}},
	{name: "peerAddress IPv4 multicast", kind: "BGPPeer", body: `spec: {peerAddress: 224.0.0.5, peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must be a unicast address"}}},
	{name: "peerAddress IPv6 multicast", kind: "BGPPeer", body: `spec: {peerAddress: "ff02::5", peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must be a unicast address"}}},
	{name: "peerAddress IPv6 link-local", kind: "BGPPeer", body: `spec: {peerAddress: "fe80::1", peerASN: 64512, myASN: 64513}`,
		want: []cause{{"spec.peerAddress", "peerAddress must not be an IPv6 link-local address"}}},
	{name: "peerASN 0", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1, peerASN: 0, myASN: 64513}`,
		want: []cause{{"spec.peerASN", "should be greater than or equal to 1"}}},
	{name: "peerASN above 32 bits", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1, peerASN: 4294967296, myASN: 64513}`,
		want: []cause{{"spec.peerASN", "should be less than or equal to 4294967295"}}},
	{name: "myASN 0", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1, peerASN: 64512, myASN: 0}`,
		want: []cause{{"spec.myASN", "should be greater than or equal to 1"}}},
	{name: "myASN negative", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1, peerASN: 64512, myASN: -1}`,
		want: []cause{{"spec.myASN", "should be greater than or equal to 1"}}},
	{name: "no myASN", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1, peerASN: 64512}`,
		want: []cause{{"spec.myASN", "Required value"}}},
	{name: "peerPort 0", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, peerPort: 0}`,
		want: []cause{{"spec.peerPort", "should be greater than or equal to 1"}}},
	{name: "peerPort above 65535", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, peerPort: 65536}`,
		want: []cause{{"spec.peerPort", "should be less than or equal to 65535"}}},
	{name: "sourceAddress not an address", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, sourceAddress: 198.51.100.300}`,
		want: []cause{{"spec.sourceAddress", "sourceAddress must be an IPv4 or IPv6 address"}}},
	{name: "sourceAddress unspecified", kind: "BGPPeer", body: `spec: {peerAddress: "2001:db8::1", peerASN: 64512, myASN: 64513, sourceAddress: "::"}`,
		want: []cause{{"spec.sourceAddress", "sourceAddress must be a unicast address"}}},
	{name: "sourceAddress IPv6 link-local", kind: "BGPPeer", body: `spec: {peerAddress: "2001:db8::1", peerASN: 64512, myASN: 64513, sourceAddress: "fe80::2"}`,
		want: []cause{{"spec.sourceAddress", "sourceAddress must not be an IPv6 link-local address"}}},
	{name: "sourceAddress in the other family", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, sourceAddress: "2001:db8::10"}`,
		want: []cause{{"spec.sourceAddress", "sourceAddress must be in the same family (IPv4 or IPv6) as peerAddress"}}},
	{name: "holdTime without unit", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: "90"}`,
		want: []cause{{"spec.holdTime", "holdTime must be a whole number of seconds"}}},
	{name: "holdTime with a fraction", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 1.5s}`,
		want: []cause{{"spec.holdTime", "holdTime must be a whole number of seconds"}}},
	{name: "holdTime in milliseconds", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 3000ms}`,
		want: []cause{{"spec.holdTime", "holdTime must be a whole number of seconds"}}},
	{name: "holdTime empty", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: ""}`,
		want: []cause{{"spec.holdTime", "holdTime must be a whole number of seconds"}}},
	{name: "holdTime 2s", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 2s}`,
		want: []cause{{"spec.holdTime", "holdTime must be 0s (no keepalives) or from 3s to 65535s"}}},
	{name: "holdTime 65536s", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 18h12m16s}`,
		want: []cause{{"spec.holdTime", "holdTime must be 0s (no keepalives) or from 3s to 65535s"}}},
	{name: "keepaliveTime without unit", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, keepaliveTime: "30"}`,
		want: []cause{{"spec.keepaliveTime", "keepaliveTime must be a whole number of seconds"}}},
	{name: "keepaliveTime equal to holdTime", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 9s, keepaliveTime: 9s}`,
		want: []cause{{"spec.keepaliveTime", "keepaliveTime must be at least 1s and less than holdTime"}}},
	{name: "keepaliveTime not below the default holdTime", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, keepaliveTime: 90s}`,
		want: []cause{{"spec.keepaliveTime", "keepaliveTime must be at least 1s and less than holdTime"}}},
	{name: "keepaliveTime 0s with holdTime", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, keepaliveTime: 0s}`,
		want: []cause{{"spec.keepaliveTime", "keepaliveTime must be at least 1s and less than holdTime"}}},
	{name: "keepaliveTime with holdTime 0s", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, holdTime: 0s, keepaliveTime: 1s}`,
		want: []cause{{"spec.keepaliveTime", "(0s when holdTime is 0s)"}}},
	{name: "ebgpMultiHop 0", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, ebgpMultiHop: 0}`,
		want: []cause{{"spec.ebgpMultiHop", "should be greater than or equal to 1"}}},
	{name: "ebgpMultiHop 256", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, ebgpMultiHop: 256}`,
		want: []cause{{"spec.ebgpMultiHop", "should be less than or equal to 255"}}},
	{name: "ebgpMultiHop on iBGP", kind: "BGPPeer", body: `spec: {peerAddress: 198.51.100.1, peerASN: 64512, myASN: 64512, ebgpMultiHop: 2}`,
		want: []cause{{"spec.ebgpMultiHop", "ebgpMultiHop applies to eBGP sessions only"}}},
	{name: "password Secret without namespace", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, passwordSecretRef: {name: bgp-auth}}`,
		want: []cause{{"spec.passwordSecretRef.namespace", "Required value"}}},
	{name: "password Secret namespace invalid", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, passwordSecretRef: {namespace: Kube_System, name: bgp-auth}}`,
		want: []cause{{"spec.passwordSecretRef.namespace", "should match"}}},
	{name: "password Secret name invalid", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, passwordSecretRef: {namespace: default, name: BGP}}`,
		want: []cause{{"spec.passwordSecretRef.name", "should match"}}},
	{name: "password key with a space", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, passwordSecretRef: {namespace: default, name: bgp, key: "my key"}}`,
		want: []cause{{"spec.passwordSecretRef.key", "should match"}}},
	{name: "empty nodeSelector", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, nodeSelectors: [{}]}`,
		want: []cause{{"spec.nodeSelectors[0]", "nodeSelectors: an empty selector ({}) matches every node"}}},
	{name: "empty nodeSelectors", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, nodeSelectors: []}`,
		want: []cause{{"spec.nodeSelectors", "should have at least 1 items"}}},
	{name: "routerID IPv6", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, routerID: "2001:db8::1"}`,
		want: []cause{{"spec.routerID", "routerID must be an IPv4 address"}}},
	{name: "routerID a name", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, routerID: node-1}`,
		want: []cause{{"spec.routerID", "routerID must be an IPv4 address"}}},
	{name: "routerID 0.0.0.0", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, routerID: 0.0.0.0}`,
		want: []cause{{"spec.routerID", "routerID must not be 0.0.0.0"}}},
	{name: "graceful restart without enabled", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, gracefulRestart: {restartTime: 60s}}`,
		want: []cause{{"spec.gracefulRestart.enabled", "Required value"}}},
	{name: "restartTime 0s", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, gracefulRestart: {enabled: true, restartTime: 0s}}`,
		want: []cause{{"spec.gracefulRestart.restartTime", "gracefulRestart.restartTime must be from 1s to 4095s"}}},
	{name: "restartTime 4096s", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, gracefulRestart: {enabled: true, restartTime: 1h8m16s}}`,
		want: []cause{{"spec.gracefulRestart.restartTime", "gracefulRestart.restartTime must be from 1s to 4095s"}}},
	{name: "restartTime in words", kind: "BGPPeer", body: `spec: {` + bgpPeer + `, gracefulRestart: {enabled: true, restartTime: 2 minutes}}`,
		want: []cause{{"spec.gracefulRestart.restartTime", "gracefulRestart.restartTime must be a whole number of seconds"}}},
}

var bgpAdvertisementCases = []admissionCase{
	{name: "no spec: every pool to every peer", kind: "BGPAdvertisement", body: ``},
	{name: "every field", kind: "BGPAdvertisement",
		body: `spec: {ipPools: [bgp], ipPoolSelectors: [{matchLabels: {bgp: "true"}}], peers: [router-a, router-b],
			nodeSelectors: [{matchLabels: {rack: r1}}], communities: ["65000:100", "0:0", "65535:65535", "large:4294967295:0:1"],
			localPref: 4294967295, aggregationLength: 24, aggregationLengthV6: 64}`},
	{name: "shortest aggregation lengths", kind: "BGPAdvertisement", body: `spec: {aggregationLength: 1, aggregationLengthV6: 1, localPref: 0}`},
	{name: "host-route aggregation lengths", kind: "BGPAdvertisement", body: `spec: {aggregationLength: 32, aggregationLengthV6: 128}`},

	{name: "standard community above 16 bits", kind: "BGPAdvertisement", body: `spec: {communities: ["65000:100", "65536:1"]}`,
		want: []cause{{"spec.communities[1]", "communities: 65536:1 is neither a standard community A:B"}}},
	{name: "standard community low half above 16 bits", kind: "BGPAdvertisement", body: `spec: {communities: ["1:65536"]}`,
		want: []cause{{"spec.communities[0]", "is neither a standard community"}}},
	{name: "community with one part", kind: "BGPAdvertisement", body: `spec: {communities: ["65000"]}`,
		want: []cause{{"spec.communities[0]", "is neither a standard community"}}},
	{name: "standard community with three parts", kind: "BGPAdvertisement", body: `spec: {communities: ["65000:1:2"]}`,
		want: []cause{{"spec.communities[0]", "is neither a standard community"}}},
	{name: "negative community part", kind: "BGPAdvertisement", body: `spec: {communities: ["-1:5"]}`,
		want: []cause{{"spec.communities[0]", "is neither a standard community"}}},
	{name: "well-known community name", kind: "BGPAdvertisement", body: `spec: {communities: [no-export]}`,
		want: []cause{{"spec.communities[0]", "is neither a standard community"}}},
	{name: "large community above 32 bits", kind: "BGPAdvertisement", body: `spec: {communities: ["large:4294967296:1:1"]}`,
		want: []cause{{"spec.communities[0]", "nor a large community large:A:B:C"}}},
	{name: "large community with two parts", kind: "BGPAdvertisement", body: `spec: {communities: ["large:1:2"]}`,
		want: []cause{{"spec.communities[0]", "nor a large community"}}},
	{name: "duplicate community", kind: "BGPAdvertisement", body: `spec: {communities: ["65000:1", "65000:1"]}`,
		want: []cause{{"spec.communities[1]", "Duplicate value"}}},
	{name: "localPref above 32 bits", kind: "BGPAdvertisement", body: `spec: {localPref: 4294967296}`,
		want: []cause{{"spec.localPref", "should be less than or equal to 4294967295"}}},
	{name: "localPref negative", kind: "BGPAdvertisement", body: `spec: {localPref: -1}`,
		want: []cause{{"spec.localPref", "should be greater than or equal to 0"}}},
	{name: "aggregationLength 0", kind: "BGPAdvertisement", body: `spec: {aggregationLength: 0}`,
		want: []cause{{"spec.aggregationLength", "should be greater than or equal to 1"}}},
	{name: "aggregationLength 33", kind: "BGPAdvertisement", body: `spec: {aggregationLength: 33}`,
		want: []cause{{"spec.aggregationLength", "should be less than or equal to 32"}}},
	{name: "aggregationLengthV6 0", kind: "BGPAdvertisement", body: `spec: {aggregationLengthV6: 0}`,
		want: []cause{{"spec.aggregationLengthV6", "should be greater than or equal to 1"}}},
	{name: "aggregationLengthV6 129", kind: "BGPAdvertisement", body: `spec: {aggregationLengthV6: 129}`,
		want: []cause{{"spec.aggregationLengthV6", "should be less than or equal to 128"}}},
	{name: "invalid peer name", kind: "BGPAdvertisement", body: `spec: {peers: [Router_A]}`,
		want: []cause{{"spec.peers[0]", "should match"}}},
	{name: "empty peers", kind: "BGPAdvertisement", body: `spec: {peers: []}`,
		want: []cause{{"spec.peers", "should have at least 1 items"}}},
	{name: "empty ipPoolSelector", kind: "BGPAdvertisement", body: `spec: {ipPoolSelectors: [{}]}`,
		want: []cause{{"spec.ipPoolSelectors[0]", "ipPoolSelectors: an empty selector"}}},
	{name: "empty nodeSelector", kind: "BGPAdvertisement", body: `spec: {nodeSelectors: [{matchLabels: {}}]}`,
		want: []cause{{"spec.nodeSelectors[0]", "nodeSelectors: an empty selector"}}},
}

var serviceAnnouncementCases = []admissionCase{
	{name: "L2", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1.lab, mode: L2, ips: [198.51.100.200, "2001:db8::200"], interfaces: [eth0]}`},
	{name: "BGP", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodes: [node-1, node-2.lab], mode: BGP, ips: [203.0.113.10], peers: [router-a, router-b]}`},

	{name: "unknown mode", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, mode: ARP, ips: [198.51.100.200], interfaces: [eth0]}`,
		want: []cause{{"mode", `Unsupported value: "ARP"`}}},
	{name: "L2 without interfaces", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, mode: L2, ips: [198.51.100.200]}`,
		want: []cause{{"interfaces", "interfaces is required in mode L2"}}},
	{name: "L2 with peers", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, mode: L2, ips: [198.51.100.200], interfaces: [eth0], peers: [router-a]}`,
		want: []cause{{"peers", "peers is required in mode BGP and not allowed in mode L2"}}},
	{name: "L2 with nodes", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, nodes: [node-1], mode: L2, ips: [198.51.100.200], interfaces: [eth0]}`,
		want: []cause{{"nodes", "nodes is required in mode BGP and not allowed in mode L2"}}},
	{name: "BGP without peers", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodes: [node-1], mode: BGP, ips: [203.0.113.10]}`,
		want: []cause{{"peers", "peers is required in mode BGP"}}},
	{name: "BGP with interfaces", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodes: [node-1], mode: BGP, ips: [203.0.113.10], peers: [router-a], interfaces: [eth0]}`,
		want: []cause{{"interfaces", "interfaces is required in mode L2 and not allowed in mode BGP"}}},
	{name: "BGP with one node named", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, nodes: [node-1], mode: BGP, ips: [203.0.113.10], peers: [router-a]}`,
		want: []cause{{"nodeName", "nodeName is required in mode L2 and not allowed in mode BGP"}}},
	{name: "BGP without nodes", kind: "ServiceAnnouncement",
		body: `{serviceName: web, mode: BGP, ips: [203.0.113.10], peers: [router-a]}`,
		want: []cause{{"nodes", "nodes is required in mode BGP"}}},
	{name: "invalid IP", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, mode: L2, ips: [198.51.100.300], interfaces: [eth0]}`,
		want: []cause{{"ips[0]", "ips must be IPv4 or IPv6 addresses"}}},
	{name: "no IPs", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, mode: L2, ips: [], interfaces: [eth0]}`,
		want: []cause{{"ips", "should have at least 1 items"}}},
	{name: "three IPs", kind: "ServiceAnnouncement",
		body: `{serviceName: web, nodeName: node-1, mode: L2, ips: [198.51.100.1, 198.51.100.2, 198.51.100.3], interfaces: [eth0]}`,
		want: []cause{{"ips", "must have at most 2 items"}}},
	{name: "invalid Service name", kind: "ServiceAnnouncement",
		body: `{serviceName: Web, nodeName: node-1, mode: L2, ips: [198.51.100.200], interfaces: [eth0]}`,
		want: []cause{{"serviceName", "should match"}}},
	{name: "L2 without a node", kind: "ServiceAnnouncement",
		body: `{serviceName: web, mode: L2, ips: [198.51.100.200], interfaces: [eth0]}`,
		want: []cause{{"nodeName", "nodeName is required in mode L2"}}},
}

var bgpSessionStateCases = []admissionCase{
	{name: "established", kind: "BGPSessionState",
		body: `{nodeName: node-1, peerName: router-a, peerAddress: 198.51.100.1, localAddress: 198.51.100.11, state: Established,
			establishedSince: "2026-01-02T03:04:05Z", prefixesSent: 3, prefixesReceived: 0}`},
	{name: "down with an error", kind: "BGPSessionState",
		body: `{nodeName: node-1, peerName: router-a, peerAddress: "2001:db8::1", state: Active,
			lastError: "received NOTIFICATION: OPEN Message Error, Bad Peer AS", lastErrorTime: "2026-01-02T03:04:05Z"}`},

	{name: "unknown state", kind: "BGPSessionState", body: `{nodeName: node-1, peerName: router-a, peerAddress: 198.51.100.1, state: Up}`,
		want: []cause{{"state", `Unsupported value: "Up"`}}},
	{name: "establishedSince while not established", kind: "BGPSessionState",
		body: `{nodeName: node-1, peerName: router-a, peerAddress: 198.51.100.1, state: Idle, establishedSince: "2026-01-02T03:04:05Z"}`,
		want: []cause{{"establishedSince", "establishedSince is set only while state is Established"}}},
	{name: "peerAddress not an address", kind: "BGPSessionState", body: `{nodeName: node-1, peerName: router-a, peerAddress: router, state: Idle}`,
		want: []cause{{"peerAddress", "peerAddress must be an IPv4 or IPv6 address"}}},
	{name: "localAddress not an address", kind: "BGPSessionState",
		body: `{nodeName: node-1, peerName: router-a, peerAddress: 198.51.100.1, localAddress: node-1, state: Idle}`,
		want: []cause{{"localAddress", "localAddress must be an IPv4 or IPv6 address"}}},
	{name: "lastError too long", kind: "BGPSessionState",
		body: `{nodeName: node-1, peerName: router-a, peerAddress: 198.51.100.1, state: Idle, lastError: ` + strings.Repeat("x", v1alpha1.MaxBGPErrorLength+1) + `}`,
		want: []cause{{"lastError", "Too long"}}},
	{name: "negative prefix count", kind: "BGPSessionState",
		body: `{nodeName: node-1, peerName: router-a, peerAddress: 198.51.100.1, state: Established, prefixesSent: -1}`,
		want: []cause{{"prefixesSent", "should be greater than or equal to 0"}}},
	{name: "invalid peer name", kind: "BGPSessionState", body: `{nodeName: node-1, peerName: Router_A, peerAddress: 198.51.100.1, state: Idle}`,
		want: []cause{{"peerName", "should match"}}},
	{name: "no node", kind: "BGPSessionState", body: `{peerName: router-a, peerAddress: 198.51.100.1, state: Idle}`,
		want: []cause{{"nodeName", "Required value"}}},
}
