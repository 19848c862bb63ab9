package plugin

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// selectsPool applies an advertisement's pool choice: named, or matching a selector, or every
// pool when both are omitted.
func selectsPool(names []string, sels []metav1.LabelSelector, p *v1alpha1.IPPool) bool {
	if len(names) == 0 && len(sels) == 0 {
		return true
	}
	return slices.Contains(names, p.Name) || matchesAny(sels, p.Labels)
}

// matchesAny reports whether set matches one of sels (an invalid selector matches nothing).
func matchesAny(sels []metav1.LabelSelector, set map[string]string) bool {
	for i := range sels {
		s, err := metav1.LabelSelectorAsSelector(&sels[i])
		if err == nil && s.Matches(labels.Set(set)) {
			return true
		}
	}
	return false
}

func selectorsText(sels []metav1.LabelSelector) string {
	var parts []string
	for i := range sels {
		parts = append(parts, metav1.FormatLabelSelector(&sels[i]))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func l2AdsFor(st *State, p *v1alpha1.IPPool) []*v1alpha1.L2Advertisement {
	var out []*v1alpha1.L2Advertisement
	for i := range st.L2Ads {
		if ad := &st.L2Ads[i]; selectsPool(ad.Spec.IPPools, ad.Spec.IPPoolSelectors, p) {
			out = append(out, ad)
		}
	}
	return out
}

func bgpAdsFor(st *State, p *v1alpha1.IPPool) []*v1alpha1.BGPAdvertisement {
	var out []*v1alpha1.BGPAdvertisement
	for i := range st.BGPAds {
		if ad := &st.BGPAds[i]; selectsPool(ad.Spec.IPPools, ad.Spec.IPPoolSelectors, p) {
			out = append(out, ad)
		}
	}
	return out
}

// readyNodes returns the nodes where svc's traffic may go, by the readiness rule the speakers
// use (config.ServingNodes), and whether it has any.
func readyNodes(st *State, svc *corev1.Service) ([]string, bool) {
	var own []*discoveryv1.EndpointSlice
	for i := range st.EndpointSlices {
		if sl := &st.EndpointSlices[i]; sl.Namespace == svc.Namespace && sl.Labels[discoveryv1.LabelServiceName] == svc.Name {
			own = append(own, sl)
		}
	}
	nodes := slices.Sorted(maps.Keys(config.ServingNodes(own)[config.ServiceKey(svc.Namespace, svc.Name)]))
	return nodes, len(nodes) > 0
}

func hasLabel(set map[string]string, key string) bool {
	_, ok := set[key]
	return ok
}

func poolNamed(st *State, name string) *v1alpha1.IPPool {
	for i := range st.Pools {
		if st.Pools[i].Name == name {
			return &st.Pools[i]
		}
	}
	return nil
}

func poolNames(st *State) []string {
	var names []string
	for _, p := range st.Pools {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func dedupe(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func sortByKey[T any](s []T, key func(T) string) {
	slices.SortStableFunc(s, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

func compareIPs(a, b string) int {
	x, errX := netip.ParseAddr(a)
	y, errY := netip.ParseAddr(b)
	if errX != nil || errY != nil {
		return strings.Compare(a, b)
	}
	return x.Compare(y)
}
