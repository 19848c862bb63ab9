package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// L2Advertisement announces the addresses of some pools on the local network: the node that
// owns an address answers ARP (IPv4) and NDP (IPv6) for it, and sends gratuitous ARP /
// unsolicited neighbour advertisements when it takes the address over. Each address has one
// owner at a time, chosen among the eligible nodes.
//
// Every list is optional and an omitted list means "all": with no ipPools and no
// ipPoolSelectors every pool is announced, with no nodeSelectors every node is eligible, with
// no interfaces the interface is chosen per address. An explicitly empty list and an empty
// selector ({}) are refused, so "all" is never written by accident.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=l2adv,categories=ironlb
// +kubebuilder:printcolumn:name="IP Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="IP Pool Selectors",type=string,JSONPath=`.spec.ipPoolSelectors`,priority=1
// +kubebuilder:printcolumn:name="Node Selectors",type=string,JSONPath=`.spec.nodeSelectors`,priority=1
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.spec.interfaces`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which pools are announced, from which nodes and on which interfaces.
	Spec L2AdvertisementSpec `json:"spec,omitempty"`
}

// L2AdvertisementSpec is the desired state of an L2Advertisement.
type L2AdvertisementSpec struct {
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

	// NodeSelectors select the nodes that may announce the addresses; a node matching any of
	// them is eligible. Nodes labelled node.kubernetes.io/exclude-from-external-load-balancers
	// never announce. An empty selector ({}) is refused. Omitted: every node.
	//
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:XValidation:rule=`(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)`,message=`nodeSelectors: an empty selector ({}) matches every node; omit nodeSelectors to use all nodes`
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// Interfaces lists the network interfaces to announce on, by name ("eth0") or shell glob
	// ("enp*", "eth[0-3]"). The owner answers only on the listed interfaces that exist on the
	// node. Omitted: the interface whose subnet contains the address; when no interface's
	// subnet does, every eligible interface that is not virtual (such as loopback, veth
	// pairs and tunnels).
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[^/\s]+$`
	Interfaces []string `json:"interfaces,omitempty"`
}

// L2AdvertisementList is a list of L2Advertisements.
//
// +kubebuilder:object:root=true
type L2AdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Advertisement `json:"items"`
}
