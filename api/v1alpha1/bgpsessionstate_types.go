package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPState is a state of the BGP finite state machine (RFC 4271 section 8).
//
// +kubebuilder:validation:Enum=Idle;Connect;Active;OpenSent;OpenConfirm;Established
type BGPState string

// The BGP session states.
const (
	// BGPStateIdle: not trying to connect, e.g. after an error, waiting to retry.
	BGPStateIdle BGPState = "Idle"
	// BGPStateConnect: opening the TCP connection.
	BGPStateConnect BGPState = "Connect"
	// BGPStateActive: the TCP connection failed; waiting to retry it.
	BGPStateActive BGPState = "Active"
	// BGPStateOpenSent: OPEN sent, waiting for the peer's.
	BGPStateOpenSent BGPState = "OpenSent"
	// BGPStateOpenConfirm: OPENs exchanged, waiting for the first KEEPALIVE.
	BGPStateOpenConfirm BGPState = "OpenConfirm"
	// BGPStateEstablished: the session is up and routes are exchanged.
	BGPStateEstablished BGPState = "Established"
)

// MaxBGPErrorLength is the longest lastError a BGPSessionState accepts; writers truncate.
const MaxBGPErrorLength = 1024

// BGPSessionState reports one node's BGP session with one BGPPeer. The speaker on that node
// writes it (one per selected peer) and deletes it when the session is no longer configured,
// so kubectl get bgpsessionstates shows every session's state and last error (filter with
// --field-selector nodeName=NODE, peerName=PEER or state=Established).
//
// It is a report, not a request: it has no spec or status, only the observed fields, and only
// speakers write it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpsession,categories=ironlb
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.nodeName`
// +kubebuilder:printcolumn:name="Peer",type=string,JSONPath=`.peerName`
// +kubebuilder:printcolumn:name="Peer Address",type=string,JSONPath=`.peerAddress`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.state`
// +kubebuilder:printcolumn:name="Since",type=date,JSONPath=`.establishedSince`
// +kubebuilder:printcolumn:name="Sent",type=integer,JSONPath=`.prefixesSent`,priority=1
// +kubebuilder:printcolumn:name="Received",type=integer,JSONPath=`.prefixesReceived`,priority=1
// +kubebuilder:printcolumn:name="Error",type=string,JSONPath=`.lastError`
// +kubebuilder:selectablefield:JSONPath=`.nodeName`
// +kubebuilder:selectablefield:JSONPath=`.peerName`
// +kubebuilder:selectablefield:JSONPath=`.state`
// +kubebuilder:validation:XValidation:rule=`self.state == 'Established' || !has(self.establishedSince)`,message=`establishedSince is set only while state is Established`,fieldPath=`.establishedSince`
type BGPSessionState struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// NodeName is the node whose speaker holds the session.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	NodeName string `json:"nodeName"`

	// PeerName is the BGPPeer the session is configured from.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	PeerName string `json:"peerName"`

	// PeerAddress is the peer's address (the BGPPeer's peerAddress when the session was
	// configured).
	//
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule=`isIP(self)`,message=`peerAddress must be an IPv4 or IPv6 address`
	PeerAddress string `json:"peerAddress"`

	// LocalAddress is the node's address on the session, the next hop of the routes it
	// advertises. Empty until a connection exists.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule=`isIP(self)`,message=`localAddress must be an IPv4 or IPv6 address`
	LocalAddress string `json:"localAddress,omitempty"`

	// State is the session's BGP state (RFC 4271): Idle, Connect, Active, OpenSent,
	// OpenConfirm or Established.
	//
	// +required
	State BGPState `json:"state"`

	// EstablishedSince is when the session last reached Established; set only while it is.
	//
	// +optional
	EstablishedSince *metav1.Time `json:"establishedSince,omitempty"`

	// LastError is the last reason the session went down or failed to come up, e.g. the
	// NOTIFICATION received from the peer ("received NOTIFICATION: OPEN Message Error, Bad Peer
	// AS") or a connection error. At most 1024 bytes; writers truncate. Kept after the
	// session recovers, with lastErrorTime saying when it happened.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`

	// LastErrorTime is when lastError happened.
	//
	// +optional
	LastErrorTime *metav1.Time `json:"lastErrorTime,omitempty"`

	// PrefixesSent is the number of prefixes advertised to the peer on this session.
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	PrefixesSent int64 `json:"prefixesSent,omitempty"`

	// PrefixesReceived is the number of prefixes the peer advertised on this session (the
	// speakers accept none into their routing, but count them).
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	PrefixesReceived int64 `json:"prefixesReceived,omitempty"`
}

// BGPSessionStateList is a list of BGPSessionStates.
//
// +kubebuilder:object:root=true
type BGPSessionStateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPSessionState `json:"items"`
}
