// Package v1alpha1 is the ironlb.io/v1alpha1 API: the custom resources that configure ironlb
// and the ones its speakers write to report what they announce.
//
// Configuration (cluster-scoped, written by operators):
//   - IPPool: addresses LoadBalancer Services may draw from, and who may draw.
//   - L2Advertisement: announce pools' addresses with ARP/NDP from some nodes and interfaces.
//   - BGPPeer: a BGP router that speakers peer with.
//   - BGPAdvertisement: announce pools' addresses over BGP to some peers, with attributes.
//
// Reports (written by speakers, read by people and tools):
//   - ServiceAnnouncement (namespaced, next to its Service): one node announces one Service.
//   - BGPSessionState (cluster-scoped): one node's session with one BGPPeer.
//
// The kubebuilder markers on these types produce the CustomResourceDefinitions in
// charts/ironlb/crds, including their admission rules (OpenAPI and CEL
// x-kubernetes-validations): the API server refuses a malformed object with a message that
// names the field. Rules that need other objects (overlapping pools, an aggregation length
// shorter than a pool's prefix) are the controller's to check and report. Regenerate the
// deepcopy functions and the CRDs with hack/generate.sh after changing this package.
//
// The CRDs need Kubernetes 1.33 or later: their rules use the CEL ip and cidr libraries and
// two-variable comprehensions, which an API server accepts in new rules one minor release
// after introducing them (1.30 and 1.32), and the report kinds declare selectable fields.
//
// +kubebuilder:object:generate=true
// +groupName=ironlb.io
package v1alpha1
