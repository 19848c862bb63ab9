package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Migration is the result of ConvertMetalLB: ironlb's objects, in the order to apply them,
// and what could not be carried over.
type Migration struct {
	Objects  []any
	Warnings []string
}

// ConvertMetalLB converts MetalLB's configuration into ironlb's. ironlb's objects are
// cluster-scoped and keep the MetalLB objects' names. BGP passwords go into Secrets in
// secretNamespace, the namespace ironlb runs in (the speaker reads Secrets only there).
// An object that cannot be converted at all is left out with a warning; a field without an
// equivalent is dropped with a warning. The error reports what would produce a wrong
// configuration (an unparsable address, two objects with one name).
func ConvertMetalLB(in *MetalLB, secretNamespace string) (Migration, error) {
	var out Migration
	warn := func(format string, args ...any) { out.Warnings = append(out.Warnings, fmt.Sprintf(format, args...)) }
	names := map[string]string{}
	unique := func(kind string, o metav1.ObjectMeta) error {
		key := kind + "/" + o.Name
		if prev, ok := names[key]; ok {
			return fmt.Errorf("%s %s/%s and %s: ironlb's %ss are cluster-scoped, so their names must differ; rename one", kind, o.Namespace, o.Name, prev, kind)
		}
		names[key] = o.Namespace + "/" + o.Name
		return nil
	}
	for _, id := range in.Ignored {
		warn("%s: no ironlb equivalent; not converted", id)
	}

	byName := func(a, b metav1.ObjectMeta) int { return strings.Compare(a.Name, b.Name) }
	pools := slices.Clone(in.Pools)
	slices.SortFunc(pools, func(a, b MetalLBPool) int { return byName(a.ObjectMeta, b.ObjectMeta) })
	for _, p := range pools {
		if err := unique("IPPool", p.ObjectMeta); err != nil {
			return Migration{}, err
		}
		obj, err := convertPool(p, warn)
		if err != nil {
			return Migration{}, err
		}
		out.Objects = append(out.Objects, obj)
	}
	l2s := slices.Clone(in.L2Ads)
	slices.SortFunc(l2s, func(a, b MetalLBL2Advertisement) int { return byName(a.ObjectMeta, b.ObjectMeta) })
	for _, a := range l2s {
		if err := unique("L2Advertisement", a.ObjectMeta); err != nil {
			return Migration{}, err
		}
		id := "L2Advertisement " + a.Namespace + "/" + a.Name
		obj := &v1alpha1.L2Advertisement{TypeMeta: typeMeta("L2Advertisement"), ObjectMeta: objectMeta(a.ObjectMeta)}
		obj.Spec.IPPools, obj.Spec.IPPoolSelectors = poolChoice(a.Spec.IPAddressPools, a.Spec.IPAddressPoolSelectors)
		obj.Spec.NodeSelectors = selectorList(id, "nodeSelectors", a.Spec.NodeSelectors, warn)
		obj.Spec.Interfaces = nonEmpty(a.Spec.Interfaces)
		out.Objects = append(out.Objects, obj)
	}
	peers := slices.Clone(in.Peers)
	slices.SortFunc(peers, func(a, b MetalLBPeer) int { return byName(a.ObjectMeta, b.ObjectMeta) })
	for _, p := range peers {
		if err := unique("BGPPeer", p.ObjectMeta); err != nil {
			return Migration{}, err
		}
		out.Objects = append(out.Objects, convertPeer(p, secretNamespace, warn)...)
	}
	aliases := map[string]string{}
	for _, c := range in.Communities {
		for _, a := range c.Spec.Communities {
			aliases[a.Name] = a.Value
		}
	}
	bgps := slices.Clone(in.BGPAds)
	slices.SortFunc(bgps, func(a, b MetalLBBGPAdvertisement) int { return byName(a.ObjectMeta, b.ObjectMeta) })
	for _, a := range bgps {
		if err := unique("BGPAdvertisement", a.ObjectMeta); err != nil {
			return Migration{}, err
		}
		id := "BGPAdvertisement " + a.Namespace + "/" + a.Name
		obj := &v1alpha1.BGPAdvertisement{TypeMeta: typeMeta("BGPAdvertisement"), ObjectMeta: objectMeta(a.ObjectMeta)}
		s := a.Spec
		obj.Spec.IPPools, obj.Spec.IPPoolSelectors = poolChoice(s.IPAddressPools, s.IPAddressPoolSelectors)
		obj.Spec.NodeSelectors = selectorList(id, "nodeSelectors", s.NodeSelectors, warn)
		obj.Spec.Peers = nonEmpty(s.Peers)
		// Values equal to the default (MetalLB's CRDs fill it in, ironlb's is the same) are left
		// out, so a cluster's objects convert as the files they were applied from.
		obj.Spec.AggregationLength, obj.Spec.AggregationLengthV6 = unlessDefault(s.AggregationLength, 32), unlessDefault(s.AggregationLengthV6, 128)
		if s.LocalPref != 0 {
			lp := s.LocalPref
			obj.Spec.LocalPref = &lp
		}
		for _, c := range s.Communities {
			if v, ok := aliases[c]; ok {
				c = v
			}
			if !validCommunity(c) {
				warn("%s: community %q is neither A:B, large:A:B:C nor the name of a Community alias; dropped", id, c)
				continue
			}
			if !slices.Contains(obj.Spec.Communities, c) {
				obj.Spec.Communities = append(obj.Spec.Communities, c)
			}
		}
		out.Objects = append(out.Objects, obj)
	}
	return out, nil
}

func convertPool(p MetalLBPool, warn func(string, ...any)) (*v1alpha1.IPPool, error) {
	id := "IPAddressPool " + p.Namespace + "/" + p.Name
	obj := &v1alpha1.IPPool{TypeMeta: typeMeta("IPPool"), ObjectMeta: objectMeta(p.ObjectMeta)}
	for i, a := range p.Spec.Addresses {
		addr, note, err := normalAddress(a)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.addresses[%d] %q: %w", id, i, a, err)
		}
		if note != "" {
			warn("%s: spec.addresses[%d] %q written as %q (%s)", id, i, a, addr, note)
		}
		obj.Spec.Addresses = append(obj.Spec.Addresses, addr)
	}
	if _, err := allocator.ParseAddresses(obj.Spec.Addresses); err != nil {
		return nil, fmt.Errorf("%s: spec.addresses: %w", id, err)
	}
	obj.Spec.AutoAssign, obj.Spec.AvoidBuggyIPs = unlessDefault(p.Spec.AutoAssign, true), p.Spec.AvoidBuggyIPs
	sa := p.Spec.ServiceAllocation
	if sa == nil {
		return obj, nil
	}
	al := &v1alpha1.IPPoolAllocation{Namespaces: nonEmpty(sa.Namespaces)}
	al.NamespaceSelector = oneSelector(id, "serviceAllocation.namespaceSelectors", sa.NamespaceSelectors, warn)
	al.ServiceSelector = oneSelector(id, "serviceAllocation.serviceSelectors", sa.ServiceSelectors, warn)
	restricted := al.Namespaces != nil || al.NamespaceSelector != nil || al.ServiceSelector != nil
	switch {
	case restricted:
		al.Priority = sa.Priority
	case sa.Priority != 0:
		warn("%s: serviceAllocation.priority %d without namespaces or selectors: ironlb orders only restricted pools (unrestricted ones by name); dropped", id, sa.Priority)
	}
	if restricted {
		obj.Spec.Allocation = al
	}
	return obj, nil
}

// normalAddress writes one MetalLB address entry the way IPPool accepts it: a range without
// spaces, a CIDR with its network address. note says what changed.
func normalAddress(a string) (string, string, error) {
	s := strings.TrimSpace(a)
	if from, to, ok := strings.Cut(s, "-"); ok {
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if _, err := netip.ParseAddr(from); err != nil {
			return "", "", fmt.Errorf("range start: %w", err)
		}
		if _, err := netip.ParseAddr(to); err != nil {
			return "", "", fmt.Errorf("range end: %w", err)
		}
		out := from + "-" + to
		if out != a {
			return out, "spaces removed", nil
		}
		return out, "", nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return "", "", errors.New("neither a CIDR nor a range of two addresses")
	}
	if m := pfx.Masked(); m != pfx {
		return m.String(), "host bits cleared: MetalLB uses the whole network", nil
	}
	return pfx.String(), "", nil
}

func convertPeer(p MetalLBPeer, secretNamespace string, warn func(string, ...any)) []any {
	id := "BGPPeer " + p.Namespace + "/" + p.Name
	s := p.Spec
	switch {
	case s.PeerAddress == "":
		warn("%s: peering by interface (%q, BGP unnumbered) has no ironlb equivalent: ironlb needs peerAddress; not converted", id, s.Interface)
		return nil
	case s.PeerASN == 0:
		warn("%s: dynamicASN %q has no ironlb equivalent: set peerASN; not converted", id, s.DynamicASN)
		return nil
	}
	obj := &v1alpha1.BGPPeer{TypeMeta: typeMeta("BGPPeer"), ObjectMeta: objectMeta(p.ObjectMeta)}
	port := s.PeerPort
	if port == 179 { // the default of both, which MetalLB's CRD fills in
		port = 0
	}
	obj.Spec = v1alpha1.BGPPeerSpec{PeerAddress: s.PeerAddress, PeerASN: s.PeerASN, MyASN: s.MyASN, PeerPort: port,
		SourceAddress: s.SourceAddress, HoldTime: s.HoldTime, KeepaliveTime: s.KeepaliveTime, RouterID: s.RouterID}
	obj.Spec.NodeSelectors = selectorList(id, "nodeSelectors", s.NodeSelectors, warn)
	if s.EBGPMultiHop {
		if s.MyASN == s.PeerASN {
			warn("%s: ebgpMultiHop on an iBGP session is meaningless (iBGP is not TTL-limited); dropped", id)
		} else {
			hops := int32(255)
			obj.Spec.EBGPMultiHop = &hops
			warn("%s: ebgpMultiHop true written as ebgpMultiHop: 255 (any distance, as FRR's ebgp-multihop); lower it to the real hop count", id)
		}
	}
	if s.HoldTime != nil && s.HoldTime.Duration == 0 {
		warn("%s: holdTime 0s (no hold timer) is not supported by ironlb's embedded GoBGP: the session would report it; set 3s or more", id)
	}
	if k := s.KeepaliveTime; k != nil && k.Duration == 0 && (s.HoldTime == nil || s.HoldTime.Duration != 0) {
		// MetalLB's own sample (bgppeer_withsecret.yaml) has it; ironlb refuses a keepalive
		// of 0 with a hold timer, which would let the router's hold timer expire.
		obj.Spec.KeepaliveTime = nil
		warn("%s: keepaliveTime 0s with a hold timer is refused by ironlb; dropped: the default, a third of holdTime, applies", id)
	}
	if s.EnableGracefulRestart {
		obj.Spec.GracefulRestart = &v1alpha1.BGPGracefulRestart{Enabled: true}
	}
	var out []any
	switch {
	case s.PasswordSecret.Name != "":
		obj.Spec.PasswordSecretRef = &v1alpha1.SecretKeyReference{Namespace: secretNamespace, Name: s.PasswordSecret.Name, Key: "password"}
		from := s.PasswordSecret.Namespace
		if from == "" {
			from = p.Namespace
		}
		if from != secretNamespace {
			warn("%s: passwordSecret %s/%s must be copied to namespace %s (same name, key password): ironlb's speaker reads Secrets only there", id, from, s.PasswordSecret.Name, secretNamespace)
		}
	case s.Password != "":
		name := p.Name + "-bgp-password"
		out = append(out, &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: secretNamespace, Name: name},
			StringData: map[string]string{"password": s.Password}})
		obj.Spec.PasswordSecretRef = &v1alpha1.SecretKeyReference{Namespace: secretNamespace, Name: name, Key: "password"}
		warn("%s: the plain-text password moved into Secret %s/%s", id, secretNamespace, name)
	}
	for _, f := range []struct {
		set  bool
		what string
	}{
		{s.BFDProfile != "", "bfdProfile " + s.BFDProfile + " (BFD)"},
		{s.ConnectTime != nil, "connectTime"},
		{s.VRF != "", "vrf " + s.VRF},
		{s.DisableMP, "disableMP"},
		{s.DualStackAddressFamily, "dualStackAddressFamily (ironlb advertises each family on a session of that family)"},
	} {
		if f.set {
			warn("%s: %s has no ironlb equivalent; dropped", id, f.what)
		}
	}
	return append(out, obj)
}

// poolChoice converts an advertisement's pool choice. A selector {} in MetalLB selects every
// pool; ironlb writes "every pool" by omitting both lists.
func poolChoice(names []string, sels []metav1.LabelSelector) ([]string, []metav1.LabelSelector) {
	if slices.ContainsFunc(sels, emptySelector) {
		return nil, nil
	}
	return nonEmpty(names), nonEmpty(sels)
}

// selectorList converts a list of selectors ORed together; one {} selects everything, which
// ironlb writes by omitting the list.
func selectorList(id, field string, sels []metav1.LabelSelector, warn func(string, ...any)) []metav1.LabelSelector {
	if slices.ContainsFunc(sels, emptySelector) {
		if len(sels) > 1 {
			warn("%s: %s holds an empty selector, which selects everything: the list is omitted", id, field)
		}
		return nil
	}
	return nonEmpty(sels)
}

// oneSelector converts MetalLB's list of selectors (ORed) into ironlb's single selector.
func oneSelector(id, field string, sels []metav1.LabelSelector, warn func(string, ...any)) *metav1.LabelSelector {
	sels = selectorList(id, field, sels, warn)
	if len(sels) == 0 {
		return nil
	}
	if len(sels) > 1 {
		warn("%s: %s has %d selectors (any may match); ironlb takes one, so only the first (%s) is kept: merge them into one selector with matchExpressions if they can be",
			id, field, len(sels), metav1.FormatLabelSelector(&sels[0]))
	}
	s := sels[0]
	return &s
}

func emptySelector(s metav1.LabelSelector) bool {
	return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

func nonEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func validCommunity(c string) bool {
	parts := strings.Split(strings.TrimPrefix(c, "large:"), ":")
	want, limit := 2, uint64(65535)
	if strings.HasPrefix(c, "large:") {
		want, limit = 3, 4294967295
	}
	if len(parts) != want {
		return false
	}
	for _, p := range parts {
		var n uint64
		if _, err := fmt.Sscan(p, &n); err != nil || n > limit || fmt.Sprint(n) != p {
			return false
		}
	}
	return true
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: kind}
}

// objectMeta keeps a MetalLB object's name and labels (pool selectors may use them); namespace and
// the rest stay behind.
func objectMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Labels: m.Labels}
}

// WriteYAML writes objects as YAML documents, without the empty fields a Go struct carries
// (status, creationTimestamp).
func WriteYAML(w io.Writer, objs []any) error {
	for i, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("encoding object %d: %w", i, err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("encoding object %d: %w", i, err)
		}
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding object %d: %w", i, err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", y); err != nil {
			return err
		}
	}
	return nil
}

// unlessDefault returns v, or nil when it holds def: a default MetalLB's CRDs write into the
// objects and that ironlb's default equals.
func unlessDefault[T comparable](v *T, def T) *T {
	if v != nil && *v == def {
		return nil
	}
	return v
}
