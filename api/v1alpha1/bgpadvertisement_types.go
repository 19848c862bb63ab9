package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPAdvertisement announces the addresses of some pools over BGP: every eligible node
// advertises each address to the selected peers, with itself as next hop, so the routers
// spread traffic over the nodes (ECMP).
//
// Every list is optional and an omitted list means "all": with no ipPools and no
// ipPoolSelectors every pool is announced, with no peers every BGPPeer receives the routes,
// with no nodeSelectors every node is eligible. An explicitly empty list and an empty
// selector ({}) are refused, so "all" is never written by accident.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv,categories=ironlb
// +kubebuilder:printcolumn:name="IP Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="IP Pool Selectors",type=string,JSONPath=`.spec.ipPoolSelectors`,priority=1
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.spec.peers`
// +kubebuilder:printcolumn:name="Node Selectors",type=string,JSONPath=`.spec.nodeSelectors`,priority=1
// +kubebuilder:printcolumn:name="Communities",type=string,JSONPath=`.spec.communities`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which pools are announced to which peers from which nodes, and with which
	// path attributes.
	Spec BGPAdvertisementSpec `json:"spec,omitempty"`
}

// BGPAdvertisementSpec is the desired state of a BGPAdvertisement.
type BGPAdvertisementSpec struct {
	// IPPools names the IPPools whose addresses are announced. A pool is announced when it is
	// named here or matches one of ipPoolSelectors. Omitted, with ipPoolSelectors also
	// omitted: every pool.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	IPPools []string `json:"ipPools,omitempty"`

	// IPPoolSelectors select IPPools by label; a pool matching any of them is announced. An
	// empty selector ({}) is refused. Omitted, with ipPools also omitted: every pool.
	//
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:XValidation:rule=`(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)`,message=`ipPoolSelectors: an empty selector ({}) matches every pool; omit ipPoolSelectors and ipPools to announce all pools`
	IPPoolSelectors []metav1.LabelSelector `json:"ipPoolSelectors,omitempty"`

	// Peers names the BGPPeers that receive the routes. Omitted: every BGPPeer.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Peers []string `json:"peers,omitempty"`

	// NodeSelectors select the nodes that advertise the addresses; a node matching any of
	// them is eligible (it must also peer with the BGPPeer). An empty selector ({}) is
	// refused. Omitted: every node.
	//
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:XValidation:rule=`(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)`,message=`nodeSelectors: an empty selector ({}) matches every node; omit nodeSelectors to use all nodes`
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// Communities are attached to the advertised routes: standard communities "A:B" (RFC
	// 1997; A and B from 0 to 65535, e.g. "65000:100") and large communities "large:A:B:C"
	// (RFC 8092; each part from 0 to 4294967295, e.g. "large:4200000000:1:2").
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=38
	// +kubebuilder:validation:items:XValidation:rule=`self.matches('^[0-9]{1,5}:[0-9]{1,5}$') ? self.split(':').all(p, int(p) <= 65535) : (self.matches('^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && self.substring(6).split(':').all(p, int(p) <= 4294967295))`,messageExpression=`'communities: ' + self + ' is neither a standard community A:B (each part 0-65535, e.g. 65000:100) nor a large community large:A:B:C (each part 0-4294967295)'`
	Communities []string `json:"communities,omitempty"`

	// LocalPref sets the LOCAL_PREF attribute (higher is preferred), 0 to 4294967295. It is
	// sent to iBGP peers only; eBGP does not carry it. Omitted: not set, the router applies
	// its default (usually 100).
	//
	// +optional
	// +kubebuilder:validation:Format=int64
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPref *uint32 `json:"localPref,omitempty"`

	// AggregationLength is the prefix length IPv4 addresses are advertised with, 1 to 32: 32
	// advertises each address as a host route, 24 the /24 that contains it, so a pool's
	// addresses in one /24 share one route. 0 is refused because it would advertise the
	// default route 0.0.0.0/0. A length shorter than a CIDR pool's own prefix would claim
	// addresses outside the pool; that needs the pool, so it is checked by the controller,
	// not at admission. Omitted: 32.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`

	// AggregationLengthV6 is the prefix length IPv6 addresses are advertised with, 1 to 128
	// (128: a host route per address). 0 is refused because it would advertise the default
	// route ::/0. Omitted: 128.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}
