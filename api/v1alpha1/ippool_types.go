package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of an IPPool's status.conditions.
const (
	// IPPoolReady is True when the pool is valid, does not overlap another pool and its
	// addresses can be allocated.
	IPPoolReady = "Ready"
	// IPPoolOverlap is True when some of the pool's addresses are also in an older pool; the
	// message names it. Such a pool is not used for allocation until the overlap is gone; the
	// older pool keeps its addresses.
	IPPoolOverlap = "Overlap"
	// IPPoolAddressesInUse is True when an edit removed addresses that Services still hold;
	// those Services keep their addresses until they release them.
	IPPoolAddressesInUse = "AddressesInUse"
	// IPPoolAddressesReserved is present, True, when the pool contains addresses of the
	// cluster's nodes (InternalIP, ExternalIP) or of the API server (the kubernetes Service's
	// endpoints); the message lists them. They are never allocated: a Service would take the
	// address over from the node.
	IPPoolAddressesReserved = "AddressesReserved"
)

// IPPool is a set of addresses that LoadBalancer Services can draw their external IPs from,
// and the rules for who may draw from it. Pools must not overlap: when one does, the older
// pool keeps its addresses and the newer one is not used for allocation, with an Overlap
// condition in its status naming the older pool.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ippool,categories=ironlb
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.spec.addresses`
// +kubebuilder:printcolumn:name="Auto Assign",type=boolean,JSONPath=`.spec.autoAssign`,priority=1
// +kubebuilder:printcolumn:name="IPv4 Available",type=string,JSONPath=`.status.ipv4.available`
// +kubebuilder:printcolumn:name="IPv6 Available",type=string,JSONPath=`.status.ipv6.available`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the pool's addresses and allocation rules.
	Spec IPPoolSpec `json:"spec"`
	// Status is written by the controller: address counts and conditions.
	// +optional
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolSpec is the desired state of an IPPool.
type IPPoolSpec struct {
	// The last rule below checks that a range does not end before it starts. CEL's ip type has
	// no ordering and cannot be turned into a number, and the cost estimator cannot bound
	// strings built by map() or string(int), so the rule compares bits with cidr(): from <= to
	// when they are equal or when, at the first prefix length l where the two addresses differ
	// (from/l contains to, from/(l+1) does not), from's bit is 0 (from/(l+1) and from/l have
	// the same network address). The literal list spells the prefix lengths "/0" to "/128"
	// because string(l) has no size bound. The test checks it against netip on random ranges.
	// Its estimated cost, about 128k per entry times maxItems 64, is close to the API server's
	// limit of 10M per rule: raising maxItems or the entries' maxLength needs a cheaper rule.

	// Addresses are the pool's addresses, each a CIDR ("198.51.100.0/24", "2001:db8::/64", a
	// single address as "198.51.100.7/32") or an inclusive range of two addresses of one family
	// ("198.51.100.10-198.51.100.20", "2001:db8::10-2001:db8::1f"), without spaces. IPv4 and
	// IPv6 entries may be mixed; a Service that needs both families gets one of each. A CIDR
	// must be written with its network address (no host bits set) and a range must not end
	// before it starts.
	//
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=79
	// +kubebuilder:validation:items:XValidation:rule=`isCIDR(self) || (self.split('-', 2).size() == 2 && isIP(self.split('-', 2)[0]) && isIP(self.split('-', 2)[1]))`,messageExpression=`isIP(self) ? 'addresses: ' + self + ' is a single address; write it as a CIDR: ' + self + (ip(self).family() == 4 ? '/32' : '/128') : 'addresses: ' + self + ' is neither a CIDR (198.51.100.0/24, 2001:db8::/64) nor a range of two addresses (198.51.100.10-198.51.100.20)'`
	// +kubebuilder:validation:items:XValidation:rule=`!isCIDR(self) || cidr(self) == cidr(self).masked()`,messageExpression=`'addresses: ' + self + ' has host bits set; write the network address (198.51.100.0/24, not 198.51.100.7/24)'`
	// +kubebuilder:validation:items:XValidation:rule=`!(self.split('-', 2).size() == 2 && isIP(self.split('-', 2)[0]) && isIP(self.split('-', 2)[1])) || ip(self.split('-', 2)[0]).family() == ip(self.split('-', 2)[1]).family()`,messageExpression=`'addresses: range ' + self + ' mixes IPv4 and IPv6; both ends must be in one family'`
	// +kubebuilder:validation:items:XValidation:rule=`!(self.split('-', 2).size() == 2 && isIP(self.split('-', 2)[0]) && isIP(self.split('-', 2)[1]) && ip(self.split('-', 2)[0]).family() == ip(self.split('-', 2)[1]).family()) || ip(self.split('-', 2)[0]) == ip(self.split('-', 2)[1]) || ['/0', '/1', '/2', '/3', '/4', '/5', '/6', '/7', '/8', '/9', '/10', '/11', '/12', '/13', '/14', '/15', '/16', '/17', '/18', '/19', '/20', '/21', '/22', '/23', '/24', '/25', '/26', '/27', '/28', '/29', '/30', '/31', '/32', '/33', '/34', '/35', '/36', '/37', '/38', '/39', '/40', '/41', '/42', '/43', '/44', '/45', '/46', '/47', '/48', '/49', '/50', '/51', '/52', '/53', '/54', '/55', '/56', '/57', '/58', '/59', '/60', '/61', '/62', '/63', '/64', '/65', '/66', '/67', '/68', '/69', '/70', '/71', '/72', '/73', '/74', '/75', '/76', '/77', '/78', '/79', '/80', '/81', '/82', '/83', '/84', '/85', '/86', '/87', '/88', '/89', '/90', '/91', '/92', '/93', '/94', '/95', '/96', '/97', '/98', '/99', '/100', '/101', '/102', '/103', '/104', '/105', '/106', '/107', '/108', '/109', '/110', '/111', '/112', '/113', '/114', '/115', '/116', '/117', '/118', '/119', '/120', '/121', '/122', '/123', '/124', '/125', '/126', '/127', '/128'].exists(i, s, i < (ip(self.split('-', 2)[0]).family() == 4 ? 32 : 128) && cidr(self.split('-', 2)[0] + s).containsIP(ip(self.split('-', 2)[1])) && !cidr(self.split('-', 2)[0] + ['/0', '/1', '/2', '/3', '/4', '/5', '/6', '/7', '/8', '/9', '/10', '/11', '/12', '/13', '/14', '/15', '/16', '/17', '/18', '/19', '/20', '/21', '/22', '/23', '/24', '/25', '/26', '/27', '/28', '/29', '/30', '/31', '/32', '/33', '/34', '/35', '/36', '/37', '/38', '/39', '/40', '/41', '/42', '/43', '/44', '/45', '/46', '/47', '/48', '/49', '/50', '/51', '/52', '/53', '/54', '/55', '/56', '/57', '/58', '/59', '/60', '/61', '/62', '/63', '/64', '/65', '/66', '/67', '/68', '/69', '/70', '/71', '/72', '/73', '/74', '/75', '/76', '/77', '/78', '/79', '/80', '/81', '/82', '/83', '/84', '/85', '/86', '/87', '/88', '/89', '/90', '/91', '/92', '/93', '/94', '/95', '/96', '/97', '/98', '/99', '/100', '/101', '/102', '/103', '/104', '/105', '/106', '/107', '/108', '/109', '/110', '/111', '/112', '/113', '/114', '/115', '/116', '/117', '/118', '/119', '/120', '/121', '/122', '/123', '/124', '/125', '/126', '/127', '/128'][i + 1]).containsIP(ip(self.split('-', 2)[1])) && cidr(self.split('-', 2)[0] + ['/0', '/1', '/2', '/3', '/4', '/5', '/6', '/7', '/8', '/9', '/10', '/11', '/12', '/13', '/14', '/15', '/16', '/17', '/18', '/19', '/20', '/21', '/22', '/23', '/24', '/25', '/26', '/27', '/28', '/29', '/30', '/31', '/32', '/33', '/34', '/35', '/36', '/37', '/38', '/39', '/40', '/41', '/42', '/43', '/44', '/45', '/46', '/47', '/48', '/49', '/50', '/51', '/52', '/53', '/54', '/55', '/56', '/57', '/58', '/59', '/60', '/61', '/62', '/63', '/64', '/65', '/66', '/67', '/68', '/69', '/70', '/71', '/72', '/73', '/74', '/75', '/76', '/77', '/78', '/79', '/80', '/81', '/82', '/83', '/84', '/85', '/86', '/87', '/88', '/89', '/90', '/91', '/92', '/93', '/94', '/95', '/96', '/97', '/98', '/99', '/100', '/101', '/102', '/103', '/104', '/105', '/106', '/107', '/108', '/109', '/110', '/111', '/112', '/113', '/114', '/115', '/116', '/117', '/118', '/119', '/120', '/121', '/122', '/123', '/124', '/125', '/126', '/127', '/128'][i + 1]).masked().ip() == cidr(self.split('-', 2)[0] + s).masked().ip())`,messageExpression=`'addresses: range ' + self + ' ends before it starts; write the lower address first'`
	Addresses []string `json:"addresses"`

	// AutoAssign lets the controller pick this pool for Services that do not ask for a pool
	// or an address. When false the pool is used only by Services that name it (annotation
	// ironlb.io/pool) or request one of its addresses. Default true.
	//
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips the IPv4 addresses ending in .0 and .255 (the network and broadcast
	// addresses of a /24), which some clients and routers mishandle. IPv6 is not affected.
	// Default false.
	//
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// Allocation restricts which Services may draw from this pool and orders restricted
	// pools. Omitted: any Service may draw from it (subject to autoAssign).
	//
	// +optional
	Allocation *IPPoolAllocation `json:"allocation,omitempty"`
}

// IPPoolAllocation restricts who may draw from a pool. A pool with any of namespaces,
// namespaceSelector or serviceSelector set is "restricted": a Service may draw from it only
// when its namespace is listed in namespaces or matches namespaceSelector (either one, when
// both are set; any namespace when neither is) and its labels match serviceSelector (when
// set). Restricted pools a Service matches are tried before unrestricted ones.
//
// +kubebuilder:validation:XValidation:rule=`!has(self.priority) || self.priority == 0 || has(self.namespaces) || has(self.namespaceSelector) || has(self.serviceSelector)`,message=`allocation.priority orders restricted pools only: also set namespaces, namespaceSelector or serviceSelector`,fieldPath=`.priority`
type IPPoolAllocation struct {
	// Priority orders the restricted pools a Service matches: lower values are tried first,
	// equal values in pool name order. Default 0 (first).
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	Priority int32 `json:"priority,omitempty"`

	// Namespaces lists the namespaces whose Services may draw from this pool.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelector selects, by label, the namespaces whose Services may draw from this
	// pool. An empty selector ({}) is refused: it would match every namespace; omit the field
	// instead.
	//
	// +optional
	// +kubebuilder:validation:XValidation:rule=`(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)`,message=`allocation.namespaceSelector must not be empty ({} matches every namespace); omit it to allow all namespaces`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ServiceSelector selects, by label, the Services that may draw from this pool. An empty
	// selector ({}) is refused: it would match every Service; omit the field instead.
	//
	// +optional
	// +kubebuilder:validation:XValidation:rule=`(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)`,message=`allocation.serviceSelector must not be empty ({} matches every Service); omit it to allow all Services`
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
}

// IPPoolStatus is the observed state of an IPPool, written by the controller.
type IPPoolStatus struct {
	// ObservedGeneration is the metadata.generation of the spec this status describes.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// IPv4 counts the pool's IPv4 addresses; omitted when the pool has none.
	//
	// +optional
	IPv4 *IPPoolAddressCounts `json:"ipv4,omitempty"`

	// IPv6 counts the pool's IPv6 addresses; omitted when the pool has none.
	//
	// +optional
	IPv6 *IPPoolAddressCounts `json:"ipv6,omitempty"`

	// RetainedAddresses are addresses that Services still hold although the pool no longer
	// contains them (its spec.addresses shrank). They stay the pool's until released: the
	// speakers announce them by the pool's advertisements, and AddressesInUse is True. At
	// most 4096 are listed (the lowest); the others are not announced.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=4096
	RetainedAddresses []string `json:"retainedAddresses,omitempty"`

	// Conditions are the pool's Ready, Overlap, AddressesInUse and (when it has some)
	// AddressesReserved conditions.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IPPoolAddressCounts counts one family's addresses of a pool. The counts are decimal strings
// because an IPv6 pool can hold more addresses than an int64 (a /64 has 2^64).
type IPPoolAddressCounts struct {
	// Total is the number of usable addresses (after avoidBuggyIPs).
	//
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	Total string `json:"total"`

	// Assigned is the number of addresses held by Services.
	//
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	Assigned string `json:"assigned"`

	// Available is Total minus Assigned.
	//
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	Available string `json:"available"`
}

// IPPoolList is a list of IPPools.
//
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}
