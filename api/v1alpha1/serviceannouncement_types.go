package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnouncementMode is how a node makes a Service's addresses reachable.
//
// +kubebuilder:validation:Enum=L2;BGP
type AnnouncementMode string

// The announcement modes.
const (
	// AnnouncementL2 answers ARP (IPv4) and NDP (IPv6) for the addresses on the local network.
	AnnouncementL2 AnnouncementMode = "L2"
	// AnnouncementBGP advertises routes for the addresses to BGP peers.
	AnnouncementBGP AnnouncementMode = "BGP"
)

// ServiceAnnouncement records who announces one Service's addresses in one mode, so the set of
// ServiceAnnouncements answers "who announces this IP?" (kubectl get serviceannouncements -A,
// or with --field-selector serviceName=NAME / mode=L2 / nodeName=NODE).
//
// In mode L2 one node answers for an address: there is one per (Service, node), written by
// that node (nodeName) while it answers. In mode BGP every eligible node announces: there is
// one per Service, listing the nodes (nodes) and written by one of them, so that the objects
// and their writes grow with the Services, not with Services times nodes. The speakers
// create them in the Service's namespace, keep them current and delete them when the
// announcement stops.
//
// It is a report, not a request: it has no spec or status, only the observed fields, and only
// speakers write it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=svcann,categories=ironlb
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.serviceName`
// +kubebuilder:printcolumn:name="IPs",type=string,JSONPath=`.ips`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.mode`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.nodeName`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.nodes`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.interfaces`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.peers`
// +kubebuilder:printcolumn:name="Conflicted",type=string,JSONPath=`.conflictedIPs`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:selectablefield:JSONPath=`.serviceName`
// +kubebuilder:selectablefield:JSONPath=`.nodeName`
// +kubebuilder:selectablefield:JSONPath=`.mode`
// +kubebuilder:validation:XValidation:rule=`has(self.nodeName) == (self.mode == 'L2')`,message=`nodeName is required in mode L2 and not allowed in mode BGP (which lists nodes)`,fieldPath=`.nodeName`
// +kubebuilder:validation:XValidation:rule=`has(self.nodes) == (self.mode == 'BGP')`,message=`nodes is required in mode BGP and not allowed in mode L2 (which names nodeName)`,fieldPath=`.nodes`
// +kubebuilder:validation:XValidation:rule=`has(self.interfaces) == (self.mode == 'L2')`,message=`interfaces is required in mode L2 and not allowed in mode BGP`,fieldPath=`.interfaces`
// +kubebuilder:validation:XValidation:rule=`has(self.peers) == (self.mode == 'BGP')`,message=`peers is required in mode BGP and not allowed in mode L2`,fieldPath=`.peers`
type ServiceAnnouncement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// ServiceName is the announced Service, in this object's namespace.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	ServiceName string `json:"serviceName"`

	// NodeName is the node that answers for the addresses. Set in mode L2 only.
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	NodeName string `json:"nodeName,omitempty"`

	// Nodes are the nodes that advertise the addresses, sorted. Set in mode BGP only.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5000
	// +kubebuilder:validation:items:MaxLength=253
	Nodes []string `json:"nodes,omitempty"`

	// Mode is how the node announces the addresses: L2 (ARP/NDP) or BGP.
	//
	// +required
	Mode AnnouncementMode `json:"mode"`

	// IPs are the Service's external addresses announced, at most one per family.
	//
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:MaxLength=45
	// +kubebuilder:validation:items:XValidation:rule=`isIP(self)`,message=`ips must be IPv4 or IPv6 addresses`
	IPs []string `json:"ips"`

	// Interfaces are the network interfaces the node answers ARP/NDP on. Set in mode L2 only.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=15
	Interfaces []string `json:"interfaces,omitempty"`

	// Peers are the BGPPeers the nodes advertise the addresses to, by name (each node to
	// those of them it has sessions with). Set in mode BGP only.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Peers []string `json:"peers,omitempty"`

	// ConflictedIPs are the addresses of ips this node owns in mode L2 but does not answer
	// for, because another host on the network already uses them: the node probed them
	// before their first announcement (ARP Probe, IPv6 duplicate address detection) and that
	// host answered. The node neither answers nor announces them, and probes them again with
	// backoff; once that host lets go, they are announced and leave this list.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:MaxLength=45
	ConflictedIPs []string `json:"conflictedIPs,omitempty"`

	// Conditions of the announcement. AddressConflict (True) says which address another host
	// uses, with its hardware address and where it answered.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AnnouncementConditionAddressConflict is the ServiceAnnouncement condition that is True
// while another host uses one of the addresses (ConflictedIPs), with reason AddressInUse.
const AnnouncementConditionAddressConflict = "AddressConflict"

// ServiceAnnouncementList is a list of ServiceAnnouncements.
//
// +kubebuilder:object:root=true
type ServiceAnnouncementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceAnnouncement `json:"items"`
}
