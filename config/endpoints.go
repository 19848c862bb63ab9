package config

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Conditions are an endpoint's conditions with the EndpointSlice API's defaults applied: a nil
// ready means ready, a nil serving defers to ready, a nil terminating means not terminating.
type Conditions struct{ Ready, Serving, Terminating bool }

// ConditionsOf reads an endpoint's conditions.
func ConditionsOf(c discoveryv1.EndpointConditions) Conditions {
	out := Conditions{Ready: c.Ready == nil || *c.Ready}
	out.Serving = out.Ready
	if c.Serving != nil {
		out.Serving = *c.Serving
	}
	out.Terminating = c.Terminating != nil && *c.Terminating
	return out
}

// Usable is the endpoint-readiness rule, kube-proxy's (pkg/proxy/topology.go): of one group
// of endpoints — one Service port and one IP family, as the caller scopes them (all of the
// Service's, or this node's alone for a Local policy) — traffic goes to the ready ones, or,
// when none is ready, to the ones that are serving and terminating, so that connections still
// find a backend while a rollout replaces the last pods. An endpoint that is neither never
// takes traffic. It returns the usable endpoints of eps, in order.
func Usable[E any](eps []E, conds func(E) Conditions) []E {
	var ready, terminating []E
	for _, ep := range eps {
		switch c := conds(ep); {
		case c.Ready:
			ready = append(ready, ep)
		case c.Serving && c.Terminating:
			terminating = append(terminating, ep)
		}
	}
	if len(ready) == 0 {
		return terminating
	}
	return ready
}

// ServiceKey is "namespace/name", the key of a Service in every map of this package.
func ServiceKey(namespace, name string) string { return namespace + "/" + name }

// ServingNodes returns, per Service key, the nodes that hold an endpoint the readiness rule
// (Usable) leaves traffic to, in some group of the Service (one port of the slices, one
// address family): where a Service's traffic may go. A Service missing from the map has no
// usable endpoint anywhere. Endpoints without a node name count under "".
func ServingNodes(slices []*discoveryv1.EndpointSlice) map[string]map[string]bool {
	type endpoint struct {
		node  string
		conds Conditions
	}
	type groupKey struct {
		service, family, port string
	}
	groups := map[groupKey][]endpoint{}
	for _, sl := range slices {
		svc := sl.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		eps := make([]endpoint, 0, len(sl.Endpoints))
		for _, ep := range sl.Endpoints {
			node := ""
			if ep.NodeName != nil {
				node = *ep.NodeName
			}
			eps = append(eps, endpoint{node, ConditionsOf(ep.Conditions)})
		}
		key := groupKey{service: ServiceKey(sl.Namespace, svc), family: string(sl.AddressType)}
		if len(sl.Ports) == 0 {
			groups[key] = append(groups[key], eps...)
		}
		for _, p := range sl.Ports {
			key.port = portKey(p)
			groups[key] = append(groups[key], eps...)
		}
	}
	out := map[string]map[string]bool{}
	for key, eps := range groups {
		for _, ep := range Usable(eps, func(e endpoint) Conditions { return e.conds }) {
			if out[key.service] == nil {
				out[key.service] = map[string]bool{}
			}
			out[key.service][ep.node] = true
		}
	}
	return out
}

// portKey identifies a slice port the way a Service port matches it: by name and protocol.
func portKey(p discoveryv1.EndpointPort) string {
	name, proto := "", corev1.ProtocolTCP
	if p.Name != nil {
		name = *p.Name
	}
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	return name + "/" + string(proto)
}
