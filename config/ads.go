package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// LabelExcludeFromLB marks nodes that must not carry load-balancer traffic (Kubernetes'
// well-known label); such nodes never announce.
const LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// Excluded reports whether a node must not announce (it carries LabelExcludeFromLB).
func Excluded(n *corev1.Node) bool {
	_, ok := n.Labels[LabelExcludeFromLB]
	return ok
}

// Invalid is a configuration object left out of the model, with why.
type Invalid struct {
	Kind, Name string // cluster-scoped: no namespace
	Err        error
}

// Selection is what an advertisement selects: pools (by name or label; neither means all)
// and nodes (by label; none means all).
type Selection struct {
	PoolNames     []string
	PoolSelectors []labels.Selector
	NodeSelectors []labels.Selector
}

func compileSelection(pools []string, poolSel, nodeSel []metav1.LabelSelector) (Selection, error) {
	s := Selection{PoolNames: pools}
	var err error
	if s.PoolSelectors, err = selectors(poolSel); err != nil {
		return s, fmt.Errorf("spec.ipPoolSelectors: %w", err)
	}
	if s.NodeSelectors, err = selectors(nodeSel); err != nil {
		return s, fmt.Errorf("spec.nodeSelectors: %w", err)
	}
	return s, nil
}

// SelectsPool reports whether the selection applies to pool p.
func (s *Selection) SelectsPool(p *Pool) bool {
	if len(s.PoolNames) == 0 && len(s.PoolSelectors) == 0 {
		return true
	}
	return slices.Contains(s.PoolNames, p.Name) || slices.ContainsFunc(s.PoolSelectors, func(sel labels.Selector) bool { return sel.Matches(p.Labels) })
}

// SelectsNode reports whether the selection applies to node n (exclusion aside).
func (s *Selection) SelectsNode(n *corev1.Node) bool { return MatchesAny(s.NodeSelectors, n) }

// MatchesAny reports whether a node matches one of sels; no selector matches every node.
func MatchesAny(sels []labels.Selector, n *corev1.Node) bool {
	return len(sels) == 0 || slices.ContainsFunc(sels, func(s labels.Selector) bool { return s.Matches(labels.Set(n.Labels)) })
}

// L2Ad is an L2Advertisement: which pools' addresses which nodes answer for, on which
// interfaces (patterns; none: the node's default ones).
type L2Ad struct {
	Name string
	Selection
	Interfaces []string
}

// CompileL2Ads returns the valid L2Advertisements, and the invalid ones with why.
func CompileL2Ads(in []*v1alpha1.L2Advertisement) ([]L2Ad, []Invalid) {
	out := make([]L2Ad, 0, len(in))
	var bad []Invalid
	for _, ad := range in {
		sel, err := compileSelection(ad.Spec.IPPools, ad.Spec.IPPoolSelectors, ad.Spec.NodeSelectors)
		if err != nil {
			bad = append(bad, Invalid{Kind: "L2Advertisement", Name: ad.Name, Err: err})
			continue
		}
		out = append(out, L2Ad{Name: ad.Name, Selection: sel, Interfaces: ad.Spec.Interfaces})
	}
	return out, bad
}

// BGPAd is a BGPAdvertisement: which pools' addresses which nodes announce to which peers,
// with which attributes.
type BGPAd struct {
	Name string
	Selection
	Peers            []string // BGPPeer names; nil: all of the node's peers
	Communities      []string // "A:B" or a well-known name
	LargeCommunities []string // "A:B:C", without the "large:" prefix
	LocalPref        *uint32
	AggV4, AggV6     int // aggregation lengths
}

// CompileBGPAds returns the valid BGPAdvertisements, and the invalid ones with why.
func CompileBGPAds(in []*v1alpha1.BGPAdvertisement) ([]BGPAd, []Invalid) {
	out := make([]BGPAd, 0, len(in))
	var bad []Invalid
	for _, ad := range in {
		sel, err := compileSelection(ad.Spec.IPPools, ad.Spec.IPPoolSelectors, ad.Spec.NodeSelectors)
		if err != nil {
			bad = append(bad, Invalid{Kind: "BGPAdvertisement", Name: ad.Name, Err: err})
			continue
		}
		c := BGPAd{Name: ad.Name, Selection: sel, Peers: ad.Spec.Peers, LocalPref: ad.Spec.LocalPref, AggV4: 32, AggV6: 128}
		for _, comm := range ad.Spec.Communities {
			if large, ok := strings.CutPrefix(comm, "large:"); ok {
				c.LargeCommunities = append(c.LargeCommunities, large)
			} else {
				c.Communities = append(c.Communities, comm)
			}
		}
		if ad.Spec.AggregationLength != nil {
			c.AggV4 = int(*ad.Spec.AggregationLength)
		}
		if ad.Spec.AggregationLengthV6 != nil {
			c.AggV6 = int(*ad.Spec.AggregationLengthV6)
		}
		out = append(out, c)
	}
	return out, bad
}

// Prefix is the announced prefix of ip: the address itself, or its aggregate. A length
// outside the family's bits (admission refuses them) announces the address itself.
func (a *BGPAd) Prefix(ip netip.Addr) netip.Prefix {
	bits := a.AggV4
	if ip.Is6() {
		bits = a.AggV6
	}
	if bits < 1 || bits > ip.BitLen() {
		bits = ip.BitLen()
	}
	return netip.PrefixFrom(ip, bits).Masked()
}

// PeerNodeSelectors compiles a BGPPeer's node selectors: which nodes hold a session with it.
func PeerNodeSelectors(p *v1alpha1.BGPPeer) ([]labels.Selector, error) {
	sels, err := selectors(p.Spec.NodeSelectors)
	if err != nil {
		return nil, fmt.Errorf("spec.nodeSelectors: %w", err)
	}
	return sels, nil
}

func selectors(in []metav1.LabelSelector) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		s, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, fmt.Errorf("selector %d: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}
