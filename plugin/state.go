// Package plugin is the logic of the kubectl plugin (cmd/kubectl-ironlb): pure functions from
// the cluster's objects to reports (status, why, pools) and from MetalLB's objects to ironlb's
// (migrate-from-metallb), and a thin client-go edge that lists those objects.
//
// The reports reuse the controller's own rules rather than restate them: a Service's request
// comes from config.RequestFor, pools are compiled by config.CompilePool, and "why is
// this Service pending" replays the allocation in an allocator.Allocator restored from the
// Services' status, as the controller does after a restart. The speaker's announcement rules
// live in a package that drives sockets, BGP and nftables, so the announcement side of the
// reports keeps to what the objects show: advertisements, node labels, endpoints,
// ServiceAnnouncements and BGPSessionStates.
package plugin

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// State is every object the reports read, as listed from the cluster.
type State struct {
	// Class is the controller's class setting (which Services are ironlb's).
	Class          config.Class
	Services       []corev1.Service
	Namespaces     []corev1.Namespace
	Nodes          []corev1.Node
	EndpointSlices []discoveryv1.EndpointSlice
	// APIServerSlices are the EndpointSlices of Service default/kubernetes: the API server's
	// addresses, which the controller never allocates (as the nodes' addresses).
	APIServerSlices []discoveryv1.EndpointSlice
	Events          []corev1.Event
	Pools           []v1alpha1.IPPool
	L2Ads           []v1alpha1.L2Advertisement
	BGPAds          []v1alpha1.BGPAdvertisement
	Peers           []v1alpha1.BGPPeer
	Sessions        []v1alpha1.BGPSessionState
	Announcements   []v1alpha1.ServiceAnnouncement
}

// model is the allocator as the controller would hold it now: the live pools, oldest first,
// the reserved addresses (nodes', API server's), and every handled Service's current
// addresses restored, oldest Service first.
type model struct {
	st       *State
	alloc    *allocator.Allocator
	rep      allocator.Report
	invalid  map[string]error // pools that do not compile
	nsLabels map[string]map[string]string
}

func newModel(st *State) *model {
	m := &model{st: st, alloc: allocator.New(), invalid: map[string]error{}, nsLabels: map[string]map[string]string{}}
	for _, ns := range st.Namespaces {
		m.nsLabels[ns.Name] = ns.Labels
	}
	pools := slices.Clone(st.Pools)
	slices.SortFunc(pools, func(a, b v1alpha1.IPPool) int { return v1alpha1.ComparePools(&a, &b) })
	var compiled []allocator.Pool
	for i := range pools {
		if pools[i].DeletionTimestamp != nil {
			continue
		}
		p, err := config.CompilePool(&pools[i])
		if err != nil {
			m.invalid[pools[i].Name] = err
			continue
		}
		compiled = append(compiled, p)
	}
	m.rep = m.alloc.SetPools(compiled)
	nodes := make([]*corev1.Node, len(st.Nodes))
	for i := range st.Nodes {
		nodes[i] = &st.Nodes[i]
	}
	apiSlices := make([]*discoveryv1.EndpointSlice, len(st.APIServerSlices))
	for i := range st.APIServerSlices {
		apiSlices[i] = &st.APIServerSlices[i]
	}
	m.alloc.SetReserved(config.ReservedAddresses(nodes, apiSlices))
	for _, svc := range m.sortedServices() {
		if ips := config.IngressIPs(svc); len(ips) > 0 && st.Class.Handles(svc) {
			req, _ := config.RequestFor(svc, m.nsLabels[svc.Namespace])
			_, _ = m.alloc.Restore(req, ips) // a conflict shows as the controller reports it
		}
	}
	return m
}

// sortedServices returns the Services oldest first, as the controller restores them.
func (m *model) sortedServices() []*corev1.Service {
	out := make([]*corev1.Service, len(m.st.Services))
	for i := range m.st.Services {
		out[i] = &m.st.Services[i]
	}
	slices.SortFunc(out, func(a, b *corev1.Service) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
			strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// request is the controller's request for svc.
func (m *model) request(svc *corev1.Service) (allocator.Request, error) {
	return config.RequestFor(svc, m.nsLabels[svc.Namespace])
}

// overlapOf returns the pool that disables name, if one does.
func (m *model) overlapOf(name string) string {
	for _, o := range m.rep.Overlaps {
		if o.Pool == name {
			return o.With
		}
	}
	return ""
}

// poolOf returns the pool ip belongs to, as the speakers decide it (config.Pools.Of).
func (st *State) poolOf(ip netip.Addr) *v1alpha1.IPPool {
	in := make([]*v1alpha1.IPPool, len(st.Pools))
	for i := range st.Pools {
		in[i] = &st.Pools[i]
	}
	if p := config.CompilePools(in).Of(ip); p != nil {
		return poolNamed(st, p.Name)
	}
	return nil
}

func (st *State) service(namespace, name string) *corev1.Service {
	for i := range st.Services {
		if s := &st.Services[i]; s.Namespace == namespace && s.Name == name {
			return s
		}
	}
	return nil
}

// announcementsOf returns the ServiceAnnouncements of a Service, one per node, by node then
// mode: a BGP one, which lists its nodes, counts once for each.
func (st *State) announcementsOf(svc *corev1.Service) []v1alpha1.ServiceAnnouncement {
	var out []v1alpha1.ServiceAnnouncement
	for _, a := range st.Announcements {
		if a.Namespace != svc.Namespace || a.ServiceName != svc.Name {
			continue
		}
		if len(a.Nodes) == 0 {
			out = append(out, a)
		}
		for _, n := range a.Nodes {
			one := a
			one.NodeName, one.Nodes = n, nil
			out = append(out, one)
		}
	}
	slices.SortFunc(out, func(a, b v1alpha1.ServiceAnnouncement) int {
		return cmp.Or(strings.Compare(a.NodeName, b.NodeName), strings.Compare(string(a.Mode), string(b.Mode)))
	})
	return out
}

// eventsOf returns a Service's events, most recent first.
func (st *State) eventsOf(svc *corev1.Service) []corev1.Event {
	var out []corev1.Event
	for _, e := range st.Events {
		o := e.InvolvedObject
		if o.Kind == "Service" && o.Namespace == svc.Namespace && o.Name == svc.Name && (o.UID == "" || o.UID == svc.UID) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b corev1.Event) int { return eventTime(b).Compare(eventTime(a)) })
	return out
}

func isLoadBalancer(svc *corev1.Service) bool { return svc.Spec.Type == corev1.ServiceTypeLoadBalancer }
