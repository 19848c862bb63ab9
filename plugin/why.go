package plugin

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Verdicts of an Explanation.
const (
	VerdictServed       = "Served"       // every address allocated and announced
	VerdictPartlyServed = "PartlyServed" // addresses held, but something is missing
	VerdictPending      = "Pending"      // no address
	VerdictNotOurs      = "NotIronlbs"   // not a Service ironlb handles
)

// Explanation is the answer of `kubectl ironlb why SERVICE`.
type Explanation struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Verdict   string    `json:"verdict"`
	IPs       []string  `json:"ips,omitempty"`
	Findings  []Finding `json:"findings,omitempty"`
}

// Finding is one thing that keeps a Service from being fully served, and what to change.
type Finding struct {
	Problem string `json:"problem"`
	Fix     string `json:"fix,omitempty"`
}

// Why explains the state of one Service.
func Why(st *State, namespace, name string) (Explanation, error) {
	svc := st.service(namespace, name)
	if svc == nil {
		return Explanation{}, fmt.Errorf("service %s/%s not found", namespace, name)
	}
	ex := Explanation{Namespace: namespace, Name: name}
	add := func(problem, fix string) { ex.Findings = append(ex.Findings, Finding{problem, fix}) }
	if !isLoadBalancer(svc) {
		ex.Verdict = VerdictNotOurs
		add(fmt.Sprintf("spec.type is %s; ironlb serves only Services of type LoadBalancer", svc.Spec.Type), "set spec.type: LoadBalancer")
		return ex, nil
	}
	if !st.Class.Handles(svc) {
		ex.Verdict = VerdictNotOurs
		if svc.Spec.LoadBalancerClass == nil {
			add("the Service has no spec.loadBalancerClass and the controller handles only class "+st.Class.Name,
				"set spec.loadBalancerClass: "+st.Class.Name+" (it can only be set when the Service is created)")
		} else {
			add(fmt.Sprintf("spec.loadBalancerClass is %q; ironlb handles %q", *svc.Spec.LoadBalancerClass, st.Class.Name),
				"another load balancer implementation serves this class; recreate the Service with class "+st.Class.Name+" for ironlb")
		}
		return ex, nil
	}
	ips := config.IngressIPs(svc)
	for _, ip := range ips {
		ex.IPs = append(ex.IPs, ip.String())
	}
	ex.Findings = append(ex.Findings, allocationFindings(st, svc, ips)...)
	for _, ip := range ips {
		ex.Findings = append(ex.Findings, announceFindings(st, svc, ip)...)
	}
	switch {
	case len(ips) == 0:
		ex.Verdict = VerdictPending
	case len(ex.Findings) > 0:
		ex.Verdict = VerdictPartlyServed
	default:
		ex.Verdict = VerdictServed
	}
	return ex, nil
}

// allocationFindings replays the Service's allocation in a model of the controller's allocator.
func allocationFindings(st *State, svc *corev1.Service, ips []netip.Addr) []Finding {
	m := newModel(st)
	req, err := m.request(svc)
	if err != nil {
		return []Finding{{Problem: "the Service's request is malformed: " + err.Error(),
			Fix: "correct the annotation or field named; the Service keeps what it holds until then"}}
	}
	cond := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
	as, aerr := m.alloc.Allocate(req)
	if aerr != nil {
		fs := explainAllocation(st, req, aerr)
		if len(ips) > 0 {
			fs = append(fs, Finding{Problem: fmt.Sprintf("meanwhile the Service keeps %s", joinIPs(ips))})
		}
		return fs
	}
	var fs []Finding
	got := as.Addrs()
	if !slices.Equal(got, ips) {
		fix := "the controller applies it on its next reconcile; if the Service stays like this, check that the controller runs: kubectl -n ironlb-system get pods, and its logs"
		fs = append(fs, Finding{Problem: fmt.Sprintf("the controller would give the Service %s but its status shows %s", joinIPs(got), orPending(joinIPs(ips))), Fix: fix})
	} else if cond != nil && cond.Status == metav1.ConditionFalse {
		fs = append(fs, Finding{Problem: fmt.Sprintf("its condition says %s: %s, though the request can now be met", cond.Reason, cond.Message),
			Fix: "the controller retries when a pool or a Service changes; if it stays, check the controller's logs"})
	} else if cond == nil && len(ips) > 0 {
		fs = append(fs, Finding{Problem: "the Service has addresses but no " + v1alpha1.ServiceConditionIPAllocated + " condition: the controller has not reconciled it",
			Fix: "check that the controller runs: kubectl -n ironlb-system get pods"})
	}
	// PreferDualStack with a family left out.
	if req.Policy == allocator.PreferDualStack && len(req.IPs) == 0 && len(got) < len(req.Families) {
		for _, f := range req.Families {
			if slices.ContainsFunc(got, func(a netip.Addr) bool { return allocator.FamilyOf(a) == f }) {
				continue
			}
			probe := req
			probe.Families, probe.Policy = []allocator.Family{f}, allocator.SingleStack
			probe.Service += "#" + f.String()
			if _, err := newModel(st).alloc.Allocate(probe); err != nil {
				for _, x := range explainAllocation(st, probe, err) {
					x.Problem = "no " + f.String() + " address (ipFamilyPolicy PreferDualStack goes on without it): " + x.Problem
					fs = append(fs, x)
				}
			}
		}
	}
	return fs
}

// explainAllocation turns the allocator's error into findings with what to change.
func explainAllocation(st *State, req allocator.Request, err error) []Finding {
	var e *allocator.Error
	if !errors.As(err, &e) {
		return []Finding{{Problem: err.Error()}}
	}
	usage := "see which Services hold the pools' addresses: kubectl ironlb pools"
	switch e.Reason {
	case allocator.NoPool:
		if e.Pool != "" {
			return []Finding{poolRefusal(st, req, e)}
		}
		return []Finding{{Problem: "no pool may serve this Service automatically: " + strings.Join(autoRefusals(st, req), "; "),
			Fix: "create an IPPool it may use, or name a pool with annotation ironlb.io/pool"}}
	case allocator.PoolExhausted:
		return []Finding{{Problem: e.Error(), Fix: "add addresses to the pool's spec.addresses or create another pool; " + usage}}
	case allocator.FamilyUnavailable:
		return []Finding{{Problem: e.Error(), Fix: fmt.Sprintf("add %s addresses to a pool the Service may use, or change its ipFamilies / ipFamilyPolicy (PreferDualStack goes on with one family)", e.Family)}}
	case allocator.RequestedIPUnavailable:
		if len(e.Holders) > 0 {
			return []Finding{{Problem: fmt.Sprintf("the requested address %s is held by %s", e.Addr, strings.Join(e.Holders, ", ")) + " (" + e.Error() + ")",
				Fix: "request another address, delete or change " + strings.Join(e.Holders, ", ") + ", or give the Services the same ironlb.io/sharing-key with no port in common"}}
		}
		return []Finding{{Problem: e.Error(), Fix: "request an address the Service may have (kubectl ironlb pools), or change the pool"}}
	case allocator.RequestedIPOutsidePools:
		return []Finding{{Problem: fmt.Sprintf("the requested address %s is in no IPPool", e.Addr),
			Fix: "add it to an IPPool's spec.addresses, or request an address of an existing pool (kubectl ironlb pools)"}}
	case allocator.AddressReserved:
		return []Finding{{Problem: e.Error(), Fix: "request another address: a node's or the API server's address is never given to a Service; remove it from the pool"}}
	case allocator.SharingConflict:
		return []Finding{{Problem: e.Error() + " (held by " + strings.Join(e.Holders, ", ") + ")",
			Fix: "Services sharing an address need the same sharing key, no (protocol, port) in common and the same externalTrafficPolicy (and, with Local, the same selector): change the ports or the sharing key"}}
	}
	return []Finding{{Problem: e.Error(), Fix: "fix the Service's ipFamilies, ipFamilyPolicy or requested addresses"}}
}

// poolRefusal explains why the requested pool e.Pool cannot serve the request.
func poolRefusal(st *State, req allocator.Request, e *allocator.Error) Finding {
	name := e.Pool
	p := poolNamed(st, name)
	switch {
	case p == nil:
		return Finding{Problem: fmt.Sprintf("the Service asks for pool %q, which does not exist (pools: %s)", name, orNone(poolNames(st))),
			Fix: "create IPPool " + name + ", or change the Service's pool annotation"}
	case p.DeletionTimestamp != nil:
		return Finding{Problem: fmt.Sprintf("the Service asks for pool %q, which is being deleted", name), Fix: "use another pool"}
	}
	if err := newModel(st).invalid[name]; err != nil {
		return Finding{Problem: fmt.Sprintf("pool %q is invalid: %v", name, err), Fix: "fix the pool's spec.addresses"}
	}
	if with := newModel(st).overlapOf(name); with != "" {
		return Finding{Problem: fmt.Sprintf("pool %q is disabled: it overlaps the older pool %q", name, with),
			Fix: fmt.Sprintf("remove the common addresses from %s (or from %s)", name, with)}
	}
	return Finding{Problem: e.Error(), Fix: fmt.Sprintf("change pool %s's spec.allocation (namespaces, namespaceSelector, serviceSelector), or the Service's namespace or labels", name)}
}

// autoRefusals says, pool by pool, why none may serve req automatically.
func autoRefusals(st *State, req allocator.Request) []string {
	if len(st.Pools) == 0 {
		return []string{"there is no IPPool"}
	}
	m := newModel(st)
	var why []string
	for _, name := range poolNames(st) {
		p := poolNamed(st, name)
		switch {
		case p.DeletionTimestamp != nil:
			why = append(why, fmt.Sprintf("pool %s is being deleted", name))
		case m.invalid[name] != nil:
			why = append(why, fmt.Sprintf("pool %s is invalid", name))
		case m.overlapOf(name) != "":
			why = append(why, fmt.Sprintf("pool %s is disabled by an overlap with %s", name, m.overlapOf(name)))
		case p.Spec.AutoAssign != nil && !*p.Spec.AutoAssign:
			why = append(why, fmt.Sprintf("pool %s has autoAssign false (name it with annotation ironlb.io/pool)", name))
		default:
			probe := req
			probe.Pool = name
			if _, err := newModel(st).alloc.Allocate(probe); err != nil && allocator.ReasonOf(err) == allocator.NoPool {
				why = append(why, strings.TrimPrefix(err.Error(), fmt.Sprintf("pool %q ", name)))
				why[len(why)-1] = "pool " + name + " " + why[len(why)-1]
			}
		}
	}
	return why
}

// announceFindings explains who should announce ip and whether they do.
func announceFindings(st *State, svc *corev1.Service, ip netip.Addr) []Finding {
	pool := st.poolOf(ip)
	if pool == nil {
		return []Finding{{Problem: fmt.Sprintf("%s is in no IPPool, so no speaker announces it", ip),
			Fix: "add it back to a pool's spec.addresses, or delete and recreate the Service to get an address of a pool"}}
	}
	l2, bgp := l2AdsFor(st, pool), bgpAdsFor(st, pool)
	if len(l2) == 0 && len(bgp) == 0 {
		return []Finding{{Problem: fmt.Sprintf("no L2Advertisement or BGPAdvertisement selects pool %s, so no node announces %s", pool.Name, ip),
			Fix: fmt.Sprintf("create an L2Advertisement (or a BGPAdvertisement) with spec.ipPools: [%s]", pool.Name)}}
	}
	var fs []Finding
	anns := st.announcementsOf(svc)
	ready, hasEndpoints := readyNodes(st, svc)
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	announcers := func(mode v1alpha1.AnnouncementMode) []string {
		var nodes []string
		for _, a := range anns {
			if a.Mode == mode && slices.Contains(a.IPs, ip.String()) {
				nodes = append(nodes, a.NodeName)
			}
		}
		return nodes
	}
	if len(l2) > 0 {
		var sels []metav1.LabelSelector
		all := false
		for _, ad := range l2 {
			sels = append(sels, ad.Spec.NodeSelectors...)
			all = all || len(ad.Spec.NodeSelectors) == 0
		}
		eligible, why := eligibleNodes(st, sels, all)
		owners := announcers(v1alpha1.AnnouncementL2)
		localReady := intersect(eligible, ready)
		switch {
		case len(eligible) == 0:
			fs = append(fs, Finding{Problem: fmt.Sprintf("no node may announce %s by L2: %s", ip, why),
				Fix: "change the L2Advertisement's nodeSelectors or the nodes' labels"})
		case local && hasEndpoints && len(localReady) == 0:
			fs = append(fs, Finding{Problem: fmt.Sprintf("externalTrafficPolicy Local: the ready endpoints are on %s, and none of those nodes may announce by L2 (eligible: %s)", orNone(ready), strings.Join(eligible, ", ")),
				Fix: "schedule the pods on eligible nodes, widen the L2Advertisement's nodeSelectors, or use externalTrafficPolicy Cluster"})
		case len(owners) == 0:
			fs = append(fs, Finding{Problem: fmt.Sprintf("no node announces %s by L2, although %s may", ip, strings.Join(eligible, ", ")),
				Fix: "check the speakers on those nodes: kubectl -n ironlb-system get pods -o wide, their logs, and Warning events on the Service and the L2Advertisement"})
		case len(owners) > 1:
			fs = append(fs, Finding{Problem: fmt.Sprintf("%s is announced by L2 from %d nodes (%s); one owner is expected", ip, len(owners), strings.Join(owners, ", ")),
				Fix: "this lasts a moment during a failover; if it stays, the speakers cannot reach each other over memberlist (port 7946 TCP and UDP between nodes)"})
		}
	}
	if len(bgp) > 0 {
		fs = append(fs, bgpFindings(st, svc, ip, bgp, ready, hasEndpoints, local, announcers(v1alpha1.AnnouncementBGP))...)
	}
	return fs
}

func bgpFindings(st *State, svc *corev1.Service, ip netip.Addr, ads []*v1alpha1.BGPAdvertisement, ready []string, hasEndpoints, local bool, advertisers []string) []Finding {
	var fs []Finding
	if !hasEndpoints {
		return []Finding{{Problem: fmt.Sprintf("%s is not advertised over BGP: the Service has no ready endpoint, and BGP withdraws such addresses", ip),
			Fix: "check the Service's selector and that its pods are ready: kubectl get endpointslices -l kubernetes.io/service-name=" + svc.Name}}
	}
	var peers []string
	for _, ad := range ads {
		if len(ad.Spec.Peers) == 0 {
			for _, p := range st.Peers {
				peers = append(peers, p.Name)
			}
			continue
		}
		for _, name := range ad.Spec.Peers {
			if !slices.ContainsFunc(st.Peers, func(p v1alpha1.BGPPeer) bool { return p.Name == name }) {
				fs = append(fs, Finding{Problem: fmt.Sprintf("BGPAdvertisement %s names BGPPeer %s, which does not exist", ad.Name, name),
					Fix: "create BGPPeer " + name + " or fix the advertisement's spec.peers"})
				continue
			}
			peers = append(peers, name)
		}
	}
	peers = dedupe(peers)
	if len(peers) == 0 {
		return append(fs, Finding{Problem: fmt.Sprintf("%s has no BGP peer to be advertised to", ip), Fix: "create a BGPPeer"})
	}
	up := 0
	for _, peer := range peers {
		sessions := 0
		for _, s := range st.Sessions {
			if s.PeerName != peer {
				continue
			}
			sessions++
			if s.State == v1alpha1.BGPStateEstablished {
				up++
				continue
			}
			msg := fmt.Sprintf("BGP session from node %s to peer %s (%s) is %s", s.NodeName, peer, s.PeerAddress, s.State)
			if s.LastError != "" {
				msg += ": " + s.LastError
			}
			fs = append(fs, Finding{Problem: msg, Fix: "check the router's side (neighbor address, ASNs, password), and that " + s.PeerAddress + " is reachable from the node on its BGP port"})
		}
		if sessions == 0 {
			fs = append(fs, Finding{Problem: fmt.Sprintf("no node has a BGP session with peer %s", peer),
				Fix: "check the BGPPeer's nodeSelectors and that the speakers run: kubectl -n ironlb-system get pods -o wide"})
		}
	}
	if len(advertisers) == 0 && up > 0 {
		var sels []metav1.LabelSelector
		all := false
		for _, ad := range ads {
			sels = append(sels, ad.Spec.NodeSelectors...)
			all = all || len(ad.Spec.NodeSelectors) == 0
		}
		eligible, why := eligibleNodes(st, sels, all)
		switch {
		case len(eligible) == 0:
			fs = append(fs, Finding{Problem: fmt.Sprintf("no node may advertise %s over BGP: %s", ip, why), Fix: "change the BGPAdvertisement's nodeSelectors or the nodes' labels"})
		case local && len(intersect(eligible, ready)) == 0:
			fs = append(fs, Finding{Problem: fmt.Sprintf("externalTrafficPolicy Local: the ready endpoints are on %s, none of which may advertise over BGP (eligible: %s)", orNone(ready), strings.Join(eligible, ", ")),
				Fix: "schedule the pods on eligible nodes or widen the BGPAdvertisement's nodeSelectors"})
		default:
			fs = append(fs, Finding{Problem: fmt.Sprintf("no node advertises %s over BGP, although sessions are up", ip),
				Fix: "check the speakers' logs and Warning events on the Service and the BGPAdvertisement"})
		}
	}
	return fs
}

// eligibleNodes returns the nodes matching any of sels (every node when all is set) and not
// labelled node.kubernetes.io/exclude-from-external-load-balancers, and, when there is none, why.
func eligibleNodes(st *State, sels []metav1.LabelSelector, all bool) ([]string, string) {
	var eligible, excluded, unmatched []string
	for _, n := range st.Nodes {
		switch {
		case !all && !matchesAny(sels, n.Labels):
			unmatched = append(unmatched, n.Name)
		case hasLabel(n.Labels, corev1.LabelNodeExcludeBalancers):
			excluded = append(excluded, n.Name)
		default:
			eligible = append(eligible, n.Name)
		}
	}
	if len(st.Nodes) == 0 {
		return nil, "the cluster has no Node"
	}
	var why []string
	if len(unmatched) > 0 {
		why = append(why, fmt.Sprintf("the nodeSelectors %s match none of %s", selectorsText(sels), strings.Join(unmatched, ", ")))
	}
	if len(excluded) > 0 {
		why = append(why, fmt.Sprintf("%s carry the label %s", strings.Join(excluded, ", "), corev1.LabelNodeExcludeBalancers))
	}
	return eligible, strings.Join(why, "; ")
}
