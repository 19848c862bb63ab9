package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Durations in this API (holdTime, keepaliveTime, restartTime) travel in BGP messages as whole
// seconds, so their rules accept only whole seconds written with h, m and s units: the
// pattern below, bounded so that CEL's duration() always parses what it admits. Each rule
// that calls duration() repeats the pattern as a guard, so a malformed value gets the
// format message alone instead of an evaluation error as well.

// BGPPeer is a BGP router that speakers open a session with. Every selected node's speaker
// peers with it and advertises the addresses that BGPAdvertisements assign to it; the router
// spreads traffic over the nodes (ECMP).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgppeer,categories=ironlb
// +kubebuilder:printcolumn:name="Peer Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="My ASN",type=integer,JSONPath=`.spec.myASN`
// +kubebuilder:printcolumn:name="Port",type=integer,JSONPath=`.spec.peerPort`,priority=1
// +kubebuilder:printcolumn:name="Hold Time",type=string,JSONPath=`.spec.holdTime`,priority=1
// +kubebuilder:printcolumn:name="Node Selectors",type=string,JSONPath=`.spec.nodeSelectors`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec describes the peer and the session.
	Spec BGPPeerSpec `json:"spec"`
}

// BGPPeerSpec is the desired state of a BGPPeer.
//
// +kubebuilder:validation:XValidation:rule=`!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.peerAddress) || ip(self.sourceAddress).family() == ip(self.peerAddress).family()`,message=`sourceAddress must be in the same family (IPv4 or IPv6) as peerAddress`,fieldPath=`.sourceAddress`
// +kubebuilder:validation:XValidation:rule=`!has(self.keepaliveTime) || !has(self.holdTime) || !(size(self.keepaliveTime) > 0 && self.keepaliveTime.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$')) || !(size(self.holdTime) > 0 && self.holdTime.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$')) || (duration(self.holdTime) == duration('0s') ? duration(self.keepaliveTime) == duration('0s') : (duration(self.keepaliveTime) >= duration('1s') && duration(self.keepaliveTime) < duration(self.holdTime)))`,message=`keepaliveTime must be at least 1s and less than holdTime (0s when holdTime is 0s)`,fieldPath=`.keepaliveTime`
// +kubebuilder:validation:XValidation:rule=`!has(self.ebgpMultiHop) || self.myASN != self.peerASN`,message=`ebgpMultiHop applies to eBGP sessions only (myASN different from peerASN)`,fieldPath=`.ebgpMultiHop`
type BGPPeerSpec struct {
	// PeerAddress is the router's IPv4 or IPv6 address, without prefix length or zone. IPv6
	// link-local addresses are not supported (they need a zone).
	//
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule=`isIP(self)`,message=`peerAddress must be an IPv4 or IPv6 address such as 198.51.100.1 or 2001:db8::1 (no prefix length, no zone)`
	// +kubebuilder:validation:XValidation:rule=`!isIP(self) || !(ip(self).isUnspecified() || self == '255.255.255.255' || cidr('224.0.0.0/4').containsIP(ip(self)) || cidr('ff00::/8').containsIP(ip(self)))`,message=`peerAddress must be a unicast address (not unspecified, broadcast or multicast)`
	// +kubebuilder:validation:XValidation:rule=`!isIP(self) || ip(self).family() == 4 || !ip(self).isLinkLocalUnicast()`,message=`peerAddress must not be an IPv6 link-local address (it needs a zone, which is not supported)`
	PeerAddress string `json:"peerAddress"`

	// PeerASN is the router's autonomous system number, 1 to 4294967295 (4-byte ASNs are
	// supported). Equal to myASN for iBGP, different for eBGP.
	//
	// +required
	// +kubebuilder:validation:Format=int64
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	PeerASN uint32 `json:"peerASN"`

	// MyASN is the autonomous system number the speakers use on this session, 1 to
	// 4294967295.
	//
	// +required
	// +kubebuilder:validation:Format=int64
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	MyASN uint32 `json:"myASN"`

	// PeerPort is the router's TCP port. Default 179.
	//
	// +optional
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PeerPort int32 `json:"peerPort,omitempty"`

	// SourceAddress is the local address the speakers connect from; it must be configured on
	// each selected node and be in peerAddress's family. Omitted: the kernel picks it from the
	// route to peerAddress. The session's local address is also the next hop of the
	// advertised routes.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule=`isIP(self)`,message=`sourceAddress must be an IPv4 or IPv6 address such as 198.51.100.10 (no prefix length, no zone)`
	// +kubebuilder:validation:XValidation:rule=`!isIP(self) || !(ip(self).isUnspecified() || self == '255.255.255.255' || cidr('224.0.0.0/4').containsIP(ip(self)) || cidr('ff00::/8').containsIP(ip(self)))`,message=`sourceAddress must be a unicast address (not unspecified, broadcast or multicast)`
	// +kubebuilder:validation:XValidation:rule=`!isIP(self) || ip(self).family() == 4 || !ip(self).isLinkLocalUnicast()`,message=`sourceAddress must not be an IPv6 link-local address (it needs a zone, which is not supported)`
	SourceAddress string `json:"sourceAddress,omitempty"`

	// HoldTime is the BGP hold time proposed in OPEN (RFC 4271): the session is dropped when
	// nothing arrives from the peer for this long. Whole seconds: 0s (no keepalives, the
	// session never times out) or 3s to 65535s. The session uses the smaller of the two
	// sides' values. Default 90s.
	//
	// +optional
	// +kubebuilder:default="90s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=24
	// +kubebuilder:validation:XValidation:rule=`size(self) > 0 && self.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$')`,message=`holdTime must be a whole number of seconds written as a duration, such as 90s, 1m30s or 0s`
	// +kubebuilder:validation:XValidation:rule=`!(size(self) > 0 && self.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$')) || duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s'))`,message=`holdTime must be 0s (no keepalives) or from 3s to 65535s`
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`

	// KeepaliveTime is the interval between KEEPALIVE messages: whole seconds, at least 1s
	// and less than holdTime, or 0s when holdTime is 0s. Omitted: a third of the negotiated
	// hold time.
	//
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=24
	// +kubebuilder:validation:XValidation:rule=`size(self) > 0 && self.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$')`,message=`keepaliveTime must be a whole number of seconds written as a duration, such as 30s or 1m`
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`

	// EBGPMultiHop is the largest number of IP hops to an eBGP peer that is not directly
	// connected (the TTL of the session's packets), 1 to 255. A hop count rather than an
	// on/off switch, so the reach of the session is a deliberate choice: 2 for a router
	// behind one other router, 255 for anywhere. Omitted: the peer must be directly connected
	// (TTL 1). Refused for iBGP sessions (myASN equal to peerASN), which are not limited.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	EBGPMultiHop *int32 `json:"ebgpMultiHop,omitempty"`

	// PasswordSecretRef names the Secret key holding the session's TCP MD5 password (RFC
	// 2385). Omitted: no password. Needs a kernel with TCP MD5 support.
	//
	// +optional
	PasswordSecretRef *SecretKeyReference `json:"passwordSecretRef,omitempty"`

	// NodeSelectors select the nodes whose speakers peer with this router; a node matching any
	// of them peers. An empty selector ({}) is refused. Omitted: every node.
	//
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:XValidation:rule=`(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)`,message=`nodeSelectors: an empty selector ({}) matches every node; omit nodeSelectors to peer from all nodes`
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// RouterID overrides the BGP identifier (an IPv4 address, also on IPv6 sessions) the
	// speakers send to this peer. Router IDs must differ between nodes, so set it only when
	// nodeSelectors select a single node. Omitted: the node's own identifier, derived from
	// its IPv4 address.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule=`isIP(self) && ip(self).family() == 4`,message=`routerID must be an IPv4 address such as 198.51.100.10 (the BGP identifier is 32 bits, also on IPv6 sessions)`
	// +kubebuilder:validation:XValidation:rule=`!isIP(self) || !ip(self).isUnspecified()`,message=`routerID must not be 0.0.0.0`
	RouterID string `json:"routerID,omitempty"`

	// GracefulRestart configures BGP graceful restart (RFC 4724): when a speaker restarts,
	// the router keeps its routes for restartTime instead of withdrawing them. Omitted:
	// disabled.
	//
	// +optional
	GracefulRestart *BGPGracefulRestart `json:"gracefulRestart,omitempty"`
}

// SecretKeyReference names one key of a Secret.
type SecretKeyReference struct {
	// Namespace of the Secret. Required: BGPPeer is cluster-scoped.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// Name of the Secret.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key in the Secret's data. Default "password".
	//
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// BGPGracefulRestart configures BGP graceful restart.
type BGPGracefulRestart struct {
	// Enabled turns graceful restart on.
	//
	// +required
	Enabled bool `json:"enabled"`

	// RestartTime is how long the router keeps a restarting speaker's routes: whole seconds
	// from 1s to 4095s (the field is 12 bits in the capability). Default 120s.
	//
	// +optional
	// +kubebuilder:default="120s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=24
	// +kubebuilder:validation:XValidation:rule=`size(self) > 0 && self.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$')`,message=`gracefulRestart.restartTime must be a whole number of seconds written as a duration, such as 120s or 2m`
	// +kubebuilder:validation:XValidation:rule=`!(size(self) > 0 && self.matches('^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$')) || (duration(self) >= duration('1s') && duration(self) <= duration('4095s'))`,message=`gracefulRestart.restartTime must be from 1s to 4095s`
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}
