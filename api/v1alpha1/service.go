package v1alpha1

// The Service side of the API: annotations a LoadBalancer Service may carry, and the condition
// the controller writes into its status.conditions.
const (
	// AnnotationIPs requests specific external addresses: a comma-separated list with at most
	// one address per family, e.g. "198.51.100.200,2001:db8::200".
	AnnotationIPs = GroupName + "/ips"
	// AnnotationPool requests an address from the named IPPool, also one with autoAssign
	// false.
	AnnotationPool = GroupName + "/pool"
	// AnnotationSharingKey lets Services share an address: Services with the same non-empty
	// key may get the same address when their (protocol, port) pairs do not overlap.
	AnnotationSharingKey = GroupName + "/sharing-key"

	// ServiceConditionIPAllocated is the condition type in a Service's status.conditions that
	// says whether it has its external addresses; on False the reason says why.
	ServiceConditionIPAllocated = GroupName + "/IPAllocated"
)

// Reasons of a False ServiceConditionIPAllocated.
const (
	// ReasonNoPool: no pool may serve the Service (none matches, or the requested one does
	// not exist).
	ReasonNoPool = "NoPool"
	// ReasonPoolExhausted: the pools the Service may use have no free address.
	ReasonPoolExhausted = "PoolExhausted"
	// ReasonRequestedIPUnavailable: a requested address is in no usable pool or is held by
	// a Service it may not share with.
	ReasonRequestedIPUnavailable = "RequestedIPUnavailable"
	// ReasonSharingConflict: the Service's sharing key matches Services whose ports or
	// traffic policy forbid sharing.
	ReasonSharingConflict = "SharingConflict"
	// ReasonAddressReserved: the requested address belongs to a node or to the API server;
	// the message names it. No Service may take it over.
	ReasonAddressReserved = "AddressReserved"
)
